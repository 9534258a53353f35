"""The contract's numeric vocabulary and conversation IDs (CONTRACT 3), shared by the
server and the client SDK. Dependency-free, so the SDK imports it without the server's
stack."""

from __future__ import annotations

from enum import IntEnum


class SessionType(IntEnum):
    SINGLE = 1
    GROUP = 3
    NOTIFICATION = 4


class ContentType(IntEnum):
    TEXT = 101
    PICTURE = 102
    VOICE = 103
    VIDEO = 104
    FILE = 105
    AT_TEXT = 106
    MERGER = 107
    CARD = 108
    LOCATION = 109
    CUSTOM = 110
    REVOKE = 111
    TYPING = 113
    QUOTE = 114


class NotificationType(IntEnum):
    """contentType of sessionType 4 messages (OpenIM 2.0)."""

    FRIEND_APPLICATION_APPROVED = 1201
    FRIEND_APPLICATION_REJECTED = 1202
    FRIEND_APPLICATION = 1203
    FRIEND_ADDED = 1204
    FRIEND_DELETED = 1205
    FRIEND_REMARK_SET = 1206
    BLACK_ADDED = 1207
    BLACK_DELETED = 1208
    CONVERSATION_OPT_CHANGE = 1300
    USER_INFO_UPDATED = 1303
    GROUP_CREATED = 1501
    GROUP_INFO_SET = 1502
    JOIN_GROUP_APPLICATION = 1503
    MEMBER_QUIT = 1504
    GROUP_APPLICATION_ACCEPTED = 1505
    GROUP_APPLICATION_REJECTED = 1506
    GROUP_OWNER_TRANSFERRED = 1507
    MEMBER_KICKED = 1508
    MEMBER_INVITED = 1509
    MEMBER_ENTER = 1510
    GROUP_DISMISSED = 1511
    GROUP_MEMBER_MUTED = 1512
    GROUP_MEMBER_CANCEL_MUTED = 1513
    GROUP_MUTED = 1514
    GROUP_CANCEL_MUTED = 1515
    GROUP_MEMBER_INFO_SET = 1516
    MSG_REVOKED = 2101
    HAS_READ_RECEIPT = 2200


# Conversation IDs: `si_<smaller userID>_<larger>`, `sg_<groupID>`, `n_<userID>`.
def single_conversation_id(a: str, b: str) -> str:
    return f"si_{a}_{b}" if a < b else f"si_{b}_{a}"


def group_conversation_id(group_id: str) -> str:
    return f"sg_{group_id}"


def notification_conversation_id(user_id: str) -> str:
    return f"n_{user_id}"
