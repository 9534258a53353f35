"""imhub's client SDK: OpenIM 2.0's client architecture in asyncio.

    client = init_sdk(Config(platform_id=7, api_addr="http://127.0.0.1:10002",
                             data_dir="./data"))
    client.add_listener(MyListener())
    await client.login("alice", token)
    await client.send_text("hi", recv_id="bob")

See docs/sdk.md.
"""

from .client import IMClient, Session, init_sdk, new_client_msg_id
from .config import Config, ws_addr_for
from .errors import (
    ConnectionLost,
    NotLoggedIn,
    RequestTimeout,
    SDKError,
    ServerError,
    TokenError,
)
from .heartbeat import Heartbeat
from .http_api import HttpApi
from .listener import ConnState, Listener
from .models import (
    ContentType,
    Message,
    NewestSeqs,
    NotificationType,
    OfflinePushInfo,
    SendAck,
    SeqRange,
    SessionType,
    group_conversation_id,
    notification_conversation_id,
    single_conversation_id,
)
from .msg_sync import MsgSync, SyncProgress
from .store import LocalConversation, LocalStore
from .ws import Ws
from .ws_conn import WsConn
from .ws_resp_asyn import WsRespAsyn

__all__ = [
    "Config",
    "ConnState",
    "ConnectionLost",
    "ContentType",
    "Heartbeat",
    "HttpApi",
    "IMClient",
    "Listener",
    "LocalConversation",
    "LocalStore",
    "Message",
    "MsgSync",
    "NewestSeqs",
    "NotLoggedIn",
    "NotificationType",
    "OfflinePushInfo",
    "RequestTimeout",
    "SDKError",
    "SendAck",
    "SeqRange",
    "ServerError",
    "Session",
    "SessionType",
    "SyncProgress",
    "TokenError",
    "Ws",
    "WsConn",
    "WsRespAsyn",
    "group_conversation_id",
    "init_sdk",
    "new_client_msg_id",
    "notification_conversation_id",
    "single_conversation_id",
    "ws_addr_for",
]
