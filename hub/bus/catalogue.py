"""The event catalogue: one typed definition per hook of the contract's table.

A Hook declares its payload fields, the fields a before hook may change, the
text fields a content filter looks at, and the field whose value orders its
events (the ordering key for webhook endpoints with `ordering: "key"`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Phase = Literal["before", "after"]

_MSG_FIELDS = (
    "sendID", "recvID", "groupID", "serverMsgID", "clientMsgID", "sessionType", "contentType",
    "content", "seq", "sendTime", "senderPlatformID", "senderNickname", "atUserIDList",
    "offlinePushInfo", "ex",
)
_MSG_MUTABLE = frozenset({"content", "contentType", "offlinePushInfo", "ex", "atUserIDList"})
_GROUP_INFO_MUTABLE = frozenset({"groupName", "notification", "introduction", "faceURL", "ex"})
_GROUP_TEXT = ("groupName", "notification", "introduction")
_MEMBER_MUTABLE = frozenset({"nickname", "faceURL", "roleLevel", "ex"})
_USER_MUTABLE = frozenset({"nickname", "faceURL", "ex"})


@dataclass(frozen=True, slots=True)
class Hook:
    name: str
    phase: Phase
    area: str
    fields: tuple[str, ...]
    key: str
    mutable: frozenset[str] = frozenset()
    text_fields: tuple[str, ...] = ()
    messages: bool = False  # a message hook: drop is a valid verdict, deniedTypes apply
    callback_command: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "callback_command",
                           f"callback{self.name[0].upper()}{self.name[1:]}Command")

    @property
    def is_before(self) -> bool:
        return self.phase == "before"


def _h(name: str, area: str, fields: tuple[str, ...], key: str, *,
       mutable: frozenset[str] = frozenset(), text: tuple[str, ...] = (),
       messages: bool = False) -> Hook:
    phase: Phase = "before" if name.startswith("before") else "after"
    return Hook(name, phase, area, fields, key, mutable, text, messages)


_USER = ("userID", "nickname", "faceURL", "ex")
_USERS = ("users",)
_FRIEND_APPLY = ("fromUserID", "toUserID", "reqMsg", "ex")
_FRIEND_RESPONSE = ("fromUserID", "toUserID", "handleResult", "handleMsg")
_GROUP_INFO = ("groupID", "groupName", "notification", "introduction", "faceURL", "ex",
               "ownerUserID", "needVerification", "status")
_GROUP_CREATE = (*_GROUP_INFO, "memberUserIDs", "adminUserIDs", "opUserID")
_PUSH = ("userIDList", "offlinePushInfo", "sendID", "recvID", "groupID", "serverMsgID",
         "clientMsgID", "sessionType", "contentType", "content", "seq")

_ALL: tuple[Hook, ...] = (
    # online status
    _h("afterUserOnline", "presence", ("userID", "platformID", "connID"), "userID"),
    _h("afterUserOffline", "presence", ("userID", "platformID", "connID"), "userID"),
    _h("afterUserKickOff", "presence", ("userID", "platformID", "reason"), "userID"),
    # user
    _h("beforeUserRegister", "user", _USERS, "userID", mutable=frozenset({"users"}),
       text=("nickname",)),
    _h("afterUserRegister", "user", _USERS, "userID"),
    _h("beforeUpdateUserInfo", "user", _USER, "userID", mutable=_USER_MUTABLE,
       text=("nickname",)),
    _h("afterUpdateUserInfo", "user", _USER, "userID"),
    # relations
    _h("beforeAddFriend", "relation", _FRIEND_APPLY, "fromUserID", text=("reqMsg",)),
    _h("afterAddFriend", "relation", _FRIEND_APPLY, "fromUserID"),
    _h("beforeAddFriendAgree", "relation", _FRIEND_RESPONSE, "toUserID", text=("handleMsg",)),
    _h("afterAddFriendAgree", "relation", _FRIEND_RESPONSE, "toUserID"),
    _h("afterAddFriendRefuse", "relation", _FRIEND_RESPONSE, "toUserID"),
    _h("afterDeleteFriend", "relation", ("ownerUserID", "friendUserID"), "ownerUserID"),
    _h("beforeSetFriendRemark", "relation", ("ownerUserID", "friendUserID", "remark"),
       "ownerUserID", mutable=frozenset({"remark"}), text=("remark",)),
    _h("afterSetFriendRemark", "relation", ("ownerUserID", "friendUserID", "remark"),
       "ownerUserID"),
    _h("beforeAddBlack", "relation", ("ownerUserID", "blackUserID"), "ownerUserID"),
    _h("afterAddBlack", "relation", ("ownerUserID", "blackUserID"), "ownerUserID"),
    _h("afterRemoveBlack", "relation", ("ownerUserID", "blackUserID"), "ownerUserID"),
    # single chat
    _h("beforeSendSingleMsg", "message", _MSG_FIELDS, "conversationID", mutable=_MSG_MUTABLE,
       text=("content",), messages=True),
    _h("afterSendSingleMsg", "message", _MSG_FIELDS, "conversationID", messages=True),
    _h("afterSingleMsgRead", "message", ("sendID", "recvID", "conversationID", "seqs"),
       "conversationID"),
    _h("afterRevokeMsg", "message",
       ("revokerUserID", "conversationID", "seq", "sendID", "recvID", "sessionType"),
       "conversationID"),
    # group chat
    _h("beforeSendGroupMsg", "message", _MSG_FIELDS, "conversationID", mutable=_MSG_MUTABLE,
       text=("content",), messages=True),
    _h("afterSendGroupMsg", "message", _MSG_FIELDS, "conversationID", messages=True),
    _h("afterGroupMsgRead", "message", ("sendID", "groupID", "conversationID", "seqs"),
       "conversationID"),
    _h("afterGroupMsgRevoke", "message",
       ("revokerUserID", "conversationID", "seq", "sendID", "groupID", "sessionType"),
       "conversationID"),
    # group changes
    _h("beforeCreateGroup", "group", _GROUP_CREATE, "groupID", mutable=_GROUP_INFO_MUTABLE,
       text=_GROUP_TEXT),
    _h("afterCreateGroup", "group", _GROUP_CREATE, "groupID"),
    _h("beforeApplyJoinGroup", "group",
       ("groupID", "userID", "reqMessage", "joinSource", "inviterUserID", "ex"), "groupID",
       text=("reqMessage",)),
    _h("beforeMemberJoinGroup", "group",
       ("groupID", "userIDs", "joinSource", "inviterUserID", "opUserID"), "groupID",
       mutable=frozenset({"refusedUserIDs"})),
    _h("afterJoinGroup", "group",
       ("groupID", "userID", "joinSource", "inviterUserID", "opUserID"), "groupID"),
    _h("afterGroupApplicationResponse", "group",
       ("groupID", "fromUserID", "handleResult", "handledMsg", "opUserID"), "groupID"),
    _h("beforeInviteUserToGroup", "group",
       ("groupID", "invitedUserIDs", "reason", "inviterUserID"), "groupID",
       mutable=frozenset({"refusedUserIDs"}), text=("reason",)),
    _h("afterInviteUserToGroup", "group",
       ("groupID", "invitedUserIDs", "reason", "inviterUserID"), "groupID"),
    _h("afterKickGroupMember", "group", ("groupID", "kickedUserIDs", "reason", "opUserID"),
       "groupID"),
    _h("afterQuitGroup", "group", ("groupID", "userID"), "groupID"),
    _h("afterTransferGroupOwner", "group",
       ("groupID", "oldOwnerUserID", "newOwnerUserID", "opUserID"), "groupID"),
    _h("afterDismissGroup", "group", ("groupID", "ownerUserID", "memberUserIDs", "opUserID"),
       "groupID"),
    _h("beforeSetGroupInfo", "group", (*_GROUP_INFO, "opUserID"), "groupID",
       mutable=_GROUP_INFO_MUTABLE, text=_GROUP_TEXT),
    _h("afterSetGroupInfo", "group", (*_GROUP_INFO, "opUserID"), "groupID"),
    _h("beforeSetGroupMemberInfo", "group",
       ("groupID", "userID", "nickname", "faceURL", "roleLevel", "ex", "opUserID"), "groupID",
       mutable=_MEMBER_MUTABLE, text=("nickname",)),
    _h("afterSetGroupMemberInfo", "group",
       ("groupID", "userID", "nickname", "faceURL", "roleLevel", "ex", "opUserID"), "groupID"),
    _h("afterMuteGroup", "group", ("groupID", "muted", "opUserID"), "groupID"),
    _h("afterMuteGroupMember", "group",
       ("groupID", "userID", "mutedSeconds", "muteEndTime", "opUserID"), "groupID"),
    # push
    _h("beforeOfflinePush", "push", _PUSH, "conversationID",
       mutable=frozenset({"userIDList", "offlinePushInfo"})),
    _h("beforeOnlinePush", "push", _PUSH, "conversationID",
       mutable=frozenset({"userIDList"})),
    _h("afterOfflinePush", "push", _PUSH, "conversationID"),
)

HOOKS: dict[str, Hook] = {h.name: h for h in _ALL}
BY_COMMAND: dict[str, Hook] = {h.callback_command: h for h in _ALL}


def hook(name: str) -> Hook:
    """The hook called `name` (raises KeyError for a name not in the catalogue)."""
    return HOOKS[name]
