"""The HTTP API a client uses (CONTRACT 2), over httpx with the user's token.

Every method returns the response's `data` and raises ServerError (TokenError for
1501/1502) when errCode is not 0, so an app needs no HTTP code of its own. The acting
user's ID is filled in wherever the contract asks for it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import httpx

from .errors import ConnectionLost, RequestTimeout, ServerError

_JSON_ERRORS = (ValueError, KeyError, TypeError)


class HttpApi:
    def __init__(self, api_addr: str, user_id: str, token: str, *, timeout: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.user_id = user_id
        self._http = httpx.AsyncClient(base_url=api_addr.rstrip("/"), timeout=timeout,
                                       headers={"token": token}, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, path: str, body: dict[str, Any]) -> Any:
        """POST one route; its `data`, or ServerError with the answer's errCode/errMsg."""
        try:
            r = await self._http.post(path, json=body,
                                      headers={"operationID": secrets.token_hex(8)})
        except httpx.TimeoutException as exc:  # request_timeout ran out: as on the socket
            raise RequestTimeout(f"{path}: no answer in time ({exc!r})") from exc
        except httpx.TransportError as exc:
            raise ConnectionLost(f"{path}: {exc!r}") from exc
        try:
            env = r.json()
            code = int(env["errCode"])
        except _JSON_ERRORS:
            raise ServerError(r.status_code, f"{path}: HTTP {r.status_code}, not an "
                                             "API answer") from None
        if code:
            raise ServerError.of(code, str(env.get("errMsg", "")), str(env.get("errDlt", "")))
        return env.get("data")

    # users

    async def get_users_info(self, user_ids: Sequence[str]) -> Any:
        return await self.call("/user/get_users_info", {"userIDs": list(user_ids)})

    async def get_self_info(self) -> dict[str, Any]:
        users = (await self.get_users_info([self.user_id]))["usersInfo"]
        return dict(users[0]) if users else {}

    async def update_self_info(self, *, nickname: str | None = None,
                               face_url: str | None = None, ex: str | None = None) -> Any:
        info: dict[str, Any] = {"userID": self.user_id}
        for key, value in (("nickname", nickname), ("faceURL", face_url), ("ex", ex)):
            if value is not None:
                info[key] = value
        return await self.call("/user/update_user_info", {"userInfo": info})

    async def get_users_online_status(self, user_ids: Sequence[str]) -> Any:
        return await self.call("/user/get_users_online_status", {"userIDs": list(user_ids)})

    # friends

    async def add_friend(self, to_user_id: str, req_msg: str = "", ex: str = "") -> Any:
        return await self.call("/friend/add_friend", {
            "fromUserID": self.user_id, "toUserID": to_user_id, "reqMsg": req_msg, "ex": ex})

    async def respond_friend_application(self, from_user_id: str, *, accept: bool,
                                         handle_msg: str = "") -> Any:
        """Agree to (or refuse) the friend request `from_user_id` sent this user."""
        return await self.call("/friend/add_friend_response", {
            "fromUserID": from_user_id, "toUserID": self.user_id,
            "handleResult": 1 if accept else -1, "handleMsg": handle_msg})

    async def delete_friend(self, friend_user_id: str) -> Any:
        return await self.call("/friend/delete_friend", {
            "ownerUserID": self.user_id, "friendUserID": friend_user_id})

    async def set_friend_remark(self, friend_user_id: str, remark: str) -> Any:
        return await self.call("/friend/set_friend_remark", {
            "ownerUserID": self.user_id, "friendUserID": friend_user_id, "remark": remark})

    async def get_friend_list(self, page: int = 1, show: int = 100) -> Any:
        return await self._list("/friend/get_friend_list", page, show)

    async def get_friend_apply_list(self, page: int = 1, show: int = 100) -> Any:
        """Requests this user received."""
        return await self._list("/friend/get_friend_apply_list", page, show)

    async def get_self_friend_apply_list(self, page: int = 1, show: int = 100) -> Any:
        """Requests this user sent."""
        return await self._list("/friend/get_self_friend_apply_list", page, show)

    async def add_black(self, black_user_id: str, ex: str = "") -> Any:
        return await self.call("/friend/add_black", {
            "ownerUserID": self.user_id, "blackUserID": black_user_id, "ex": ex})

    async def remove_black(self, black_user_id: str) -> Any:
        return await self.call("/friend/remove_black", {
            "ownerUserID": self.user_id, "blackUserID": black_user_id})

    async def get_black_list(self, page: int = 1, show: int = 100) -> Any:
        return await self._list("/friend/get_black_list", page, show)

    async def _list(self, path: str, page: int, show: int) -> Any:
        return await self.call(path, {"userID": self.user_id,
                                      "pagination": {"pageNumber": page, "showNumber": show}})

    # groups

    async def create_group(self, group_name: str, member_user_ids: Sequence[str] = (), *,
                           admin_user_ids: Sequence[str] = (), group_id: str = "",
                           need_verification: int = 0, notification: str = "",
                           introduction: str = "", face_url: str = "", ex: str = "") -> Any:
        info: dict[str, Any] = {
            "groupName": group_name, "notification": notification,
            "introduction": introduction, "faceURL": face_url, "ex": ex,
            "needVerification": need_verification}
        if group_id:
            info["groupID"] = group_id
        return await self.call("/group/create_group", {
            "ownerUserID": self.user_id, "memberUserIDs": list(member_user_ids),
            "adminUserIDs": list(admin_user_ids), "groupInfo": info})

    async def set_group_info(self, group_id: str, **changes: Any) -> Any:
        """Change group fields by their wire names (groupName=..., notification=...)."""
        return await self.call("/group/set_group_info",
                               {"groupInfo": {"groupID": group_id, **changes}})

    async def join_group(self, group_id: str, req_message: str = "",
                         join_source: int | None = None, inviter_user_id: str = "") -> Any:
        """Join (or ask to join, per the group's needVerification)."""
        body: dict[str, Any] = {"groupID": group_id, "reqMessage": req_message}
        if join_source is not None:
            body["joinSource"] = join_source
        if inviter_user_id:
            body["inviterUserID"] = inviter_user_id
        return await self.call("/group/join_group", body)

    async def respond_group_application(self, group_id: str, from_user_id: str, *,
                                        accept: bool, handled_msg: str = "") -> Any:
        return await self.call("/group/group_application_response", {
            "groupID": group_id, "fromUserID": from_user_id,
            "handleResult": 1 if accept else -1, "handledMsg": handled_msg})

    async def invite_user_to_group(self, group_id: str, user_ids: Sequence[str],
                                   reason: str = "") -> Any:
        return await self.call("/group/invite_user_to_group", {
            "groupID": group_id, "invitedUserIDs": list(user_ids), "reason": reason})

    async def kick_group_member(self, group_id: str, user_ids: Sequence[str],
                                reason: str = "") -> Any:
        return await self.call("/group/kick_group", {
            "groupID": group_id, "kickedUserIDs": list(user_ids), "reason": reason})

    async def quit_group(self, group_id: str) -> Any:
        return await self.call("/group/quit_group",
                               {"groupID": group_id, "userID": self.user_id})

    async def transfer_group(self, group_id: str, new_owner_user_id: str) -> Any:
        return await self.call("/group/transfer_group", {
            "groupID": group_id, "oldOwnerUserID": self.user_id,
            "newOwnerUserID": new_owner_user_id})

    async def dismiss_group(self, group_id: str) -> Any:
        return await self.call("/group/dismiss_group", {"groupID": group_id})

    async def mute_group_member(self, group_id: str, user_id: str, seconds: int) -> Any:
        return await self.call("/group/mute_group_member", {
            "groupID": group_id, "userID": user_id, "mutedSeconds": seconds})

    async def cancel_mute_group_member(self, group_id: str, user_id: str) -> Any:
        return await self.call("/group/cancel_mute_group_member",
                               {"groupID": group_id, "userID": user_id})

    async def mute_group(self, group_id: str) -> Any:
        return await self.call("/group/mute_group", {"groupID": group_id})

    async def cancel_mute_group(self, group_id: str) -> Any:
        return await self.call("/group/cancel_mute_group", {"groupID": group_id})

    async def set_group_member_info(self, group_id: str, user_id: str, **changes: Any) -> Any:
        """Change a member's fields by their wire names (nickname=..., roleLevel=...)."""
        return await self.call("/group/set_group_member_info", {
            "members": [{"groupID": group_id, "userID": user_id, **changes}]})

    async def get_groups_info(self, group_ids: Sequence[str]) -> Any:
        return await self.call("/group/get_groups_info", {"groupIDs": list(group_ids)})

    async def get_group_member_list(self, group_id: str, page: int = 1,
                                    show: int = 100) -> Any:
        return await self.call("/group/get_group_member_list", {
            "groupID": group_id, "pagination": {"pageNumber": page, "showNumber": show}})

    async def get_joined_group_list(self, page: int = 1, show: int = 100) -> Any:
        return await self.call("/group/get_joined_group_list", {
            "fromUserID": self.user_id,
            "pagination": {"pageNumber": page, "showNumber": show}})

    async def get_recv_group_application_list(self, page: int = 1, show: int = 100) -> Any:
        return await self.call("/group/get_recv_group_applicationList", {
            "fromUserID": self.user_id,
            "pagination": {"pageNumber": page, "showNumber": show}})

    # conversations and messages

    async def get_all_conversations(self) -> Any:
        return await self.call("/conversation/get_all_conversations",
                               {"ownerUserID": self.user_id})

    async def mark_msgs_as_read(self, conversation_id: str, seqs: Sequence[int]) -> Any:
        return await self.call("/msg/mark_msgs_as_read", {
            "ownerUserID": self.user_id, "conversationID": conversation_id,
            "seqs": list(seqs)})

    async def revoke_msg(self, conversation_id: str, seq: int) -> Any:
        return await self.call("/msg/revoke_msg", {
            "userID": self.user_id, "conversationID": conversation_id, "seq": seq})

    async def newest_seq(self) -> Any:
        return await self.call("/msg/newest_seq", {"userID": self.user_id})

    async def pull_msg_by_seq(self, ranges: Sequence[dict[str, Any]]) -> Any:
        return await self.call("/msg/pull_msg_by_seq",
                               {"userID": self.user_id, "seqRanges": list(ranges)})
