"""The emulator's gateway: JSON text frames, HELLO/IDENTIFY/READY, heartbeats, RESUME and dispatch.

Sharding as Discord does it: a session that IDENTIFYs with ``shard: [id, count]`` receives the
guilds (in READY and GUILD_CREATE) and the guild events of shard ``(guild_id >> 22) % count``
only, and direct-message events go to shard 0; several sessions (one bot's shards, or several
bots splitting them) are connected at once. A session without a shard gets everything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from bot.sim.state import PRIVILEGED_INTENTS, SimState

log = logging.getLogger(__name__)

DISPATCH = 0
HEARTBEAT = 1
IDENTIFY = 2
PRESENCE_UPDATE = 3
VOICE_STATE_UPDATE = 4
RESUME = 6
RECONNECT = 7
REQUEST_GUILD_MEMBERS = 8
INVALID_SESSION = 9
HELLO = 10
HEARTBEAT_ACK = 11

CLOSE_INVALID_SHARD = 4010


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard Discord sends a guild's events to."""
    return (guild_id >> 22) % shard_count


REPLAY_BUFFER = 2000


class GatewaySession:
    """One identified bot session; keeps recent events so a RESUME can replay them."""

    def __init__(self, session_id: str, intents: int, shard: list[int] | None) -> None:
        self.id = session_id
        self.intents = intents
        self.shard = shard
        self.seq = 0
        self.ws: web.WebSocketResponse | None = None
        self.buffer: deque[tuple[int, str]] = deque(maxlen=REPLAY_BUFFER)
        self.lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self.ws is not None and not self.ws.closed

    @property
    def shard_key(self) -> tuple[int, int]:
        """(shard id, shard count); (0, 1) for a session without a shard."""
        return (self.shard[0], self.shard[1]) if self.shard else (0, 1)

    def serves(self, guild_id: int | None) -> bool:
        """Whether Discord would send this guild's events (None: a DM's) to this session."""
        shard_id, count = self.shard_key
        if guild_id is None:
            return shard_id == 0
        return shard_of(guild_id, count) == shard_id

    async def dispatch(self, event: str, data: Any) -> None:
        async with self.lock:
            self.seq += 1
            frame = json.dumps({"op": DISPATCH, "t": event, "s": self.seq, "d": data})
            self.buffer.append((self.seq, frame))
            await self._send(frame)

    async def send_op(self, op: int, data: Any) -> None:
        async with self.lock:
            await self._send(json.dumps({"op": op, "d": data}))

    async def replay_after(self, seq: int) -> None:
        async with self.lock:
            for number, frame in list(self.buffer):
                if number > seq:
                    await self._send(frame)

    async def _send(self, frame: str) -> None:
        if self.ws is None or self.ws.closed:
            return  # kept in the buffer for a RESUME
        try:
            await self.ws.send_str(frame)
        except (ConnectionError, RuntimeError):
            log.debug("gateway send failed; event kept for resume")


class GatewayHub:
    """Accepts gateway connections and routes each event to the session(s) of its shard.

    ``live`` holds the latest session per shard (a new IDENTIFY for a shard replaces the one
    before, as on Discord, and one with another shard count replaces them all); ``current`` is
    the latest session to identify.
    """

    def __init__(
        self,
        state: SimState,
        *,
        gateway_url: Callable[[], str],
        heartbeat_interval_ms: int = 41250,
    ) -> None:
        self.state = state
        self._gateway_url = gateway_url
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.sessions: dict[str, GatewaySession] = {}
        self.live: dict[tuple[int, int], GatewaySession] = {}
        self.current: GatewaySession | None = None
        self.ready = asyncio.Event()
        self.identify_count = 0
        self.resume_count = 0
        self.heartbeats = 0
        self.presence_updates: list[Any] = []
        self._sockets: set[web.WebSocketResponse] = set()

    @property
    def intents(self) -> int:
        return self.current.intents if self.current is not None else 0

    @property
    def shards(self) -> list[tuple[int, int]]:
        """The (shard id, shard count) of every live session, in order."""
        return sorted(self.live)

    def sessions_for(self, guild_id: int | None) -> list[GatewaySession]:
        """The live sessions Discord would send this guild's (None: a DM's) events to."""
        return [session for _, session in sorted(self.live.items()) if session.serves(guild_id)]

    async def dispatch(self, event: str, data: Any) -> None:
        """Send an event to the session(s) of its guild's shard (buffered for RESUME while
        one is disconnected); an event without a guild goes to shard 0."""
        guild_id = data.get("guild_id") if isinstance(data, dict) else None
        for session in self.sessions_for(int(guild_id) if guild_id else None):
            await session.dispatch(event, data)

    async def request_reconnect(self) -> None:
        """Ask every connected session to reconnect (op 7); discord.py then RESUMEs."""
        sessions = [s for s in self.live.values() if s.connected]
        if sessions:
            self.ready.clear()
        for session in sessions:
            await session.send_op(RECONNECT, None)

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"emulator shutting down")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        self._sockets.add(ws)
        session: GatewaySession | None = None
        try:
            await ws.send_str(
                json.dumps({"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
            )
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    if message.type is WSMsgType.BINARY:
                        await ws.close(code=4002, message=b"Decode error")
                    break
                try:
                    frame = json.loads(message.data)
                    op = frame["op"]
                except (ValueError, KeyError, TypeError):
                    await ws.close(code=4002, message=b"Decode error")
                    break
                data = frame.get("d")
                if op == HEARTBEAT:
                    self.heartbeats += 1
                    await ws.send_str(json.dumps({"op": HEARTBEAT_ACK}))
                elif op == IDENTIFY:
                    if session is not None:
                        await ws.close(code=4005, message=b"Already authenticated.")
                        break
                    session = await self._identify(ws, data or {})
                    if session is None:
                        break
                elif op == RESUME:
                    session = await self._resume(ws, data or {})
                    if session is None:
                        continue  # INVALID_SESSION sent; the client identifies anew
                elif op == REQUEST_GUILD_MEMBERS:
                    if session is None:
                        await ws.close(code=4003, message=b"Not authenticated.")
                        break
                    await self._members_chunk(session, data or {})
                elif op == PRESENCE_UPDATE:
                    self.presence_updates.append(data)
                elif op == VOICE_STATE_UPDATE:
                    pass
                else:
                    await ws.close(code=4001, message=b"Unknown opcode.")
                    break
        finally:
            self._sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
                if self.current is session:
                    self.ready.clear()
        return ws

    async def _identify(
        self, ws: web.WebSocketResponse, data: dict[str, Any]
    ) -> GatewaySession | None:
        if data.get("token") != self.state.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        if int(data.get("intents", 0)) & PRIVILEGED_INTENTS & ~self.state.privileged_intents:
            # A privileged intent the app was not given in the Developer Portal.
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            return None
        shard = data.get("shard")
        if shard is not None and not _valid_shard(shard):
            await ws.close(code=CLOSE_INVALID_SHARD, message=b"Invalid shard.")
            return None
        self.identify_count += 1
        self.ready.clear()
        session = GatewaySession(secrets.token_hex(16), int(data.get("intents", 0)), shard)
        session.ws = ws
        self.sessions[session.id] = session
        # A new shard count (no shard: a count of 1) replaces the sessions of the old one.
        count = session.shard_key[1]
        self.live = {key: live for key, live in self.live.items() if key[1] == count}
        self.live[session.shard_key] = session
        self.current = session
        state = self.state
        me = state.user_payload(state.bot_user) | {"verified": True, "mfa_enabled": False}
        ready: dict[str, Any] = {
            "v": 10,
            "user": me,
            "guilds": [
                {"id": str(g), "unavailable": True} for g in state.guilds if session.serves(g)
            ],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self._gateway_url(),
            "application": {"id": str(state.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "geo_ordered_rtc_regions": ["local"],
            "guild_join_requests": [],
            "user_settings": {},
            "auth": {},
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        await session.dispatch("READY", ready)
        for guild in state.guilds.values():
            if session.serves(guild.id):
                await session.dispatch(
                    "GUILD_CREATE", state.guild_payload(guild, intents=session.intents)
                )
        self.ready.set()
        return session

    async def _resume(
        self, ws: web.WebSocketResponse, data: dict[str, Any]
    ) -> GatewaySession | None:
        session = self.sessions.get(str(data.get("session_id")))
        if (
            session is None
            or data.get("token") != self.state.token
            or self.live.get(session.shard_key) is not session
        ):
            await ws.send_str(json.dumps({"op": INVALID_SESSION, "d": False}))
            return None
        self.resume_count += 1
        session.ws = ws
        await session.replay_after(int(data.get("seq") or 0))
        await session.dispatch("RESUMED", {})
        self.ready.set()
        return session

    async def _members_chunk(self, session: GatewaySession, data: dict[str, Any]) -> None:
        guild = self.state.guilds.get(int(data.get("guild_id", 0)))
        if guild is None:
            return
        query = str(data.get("query") or "").lower()
        ids = {int(u) for u in data.get("user_ids") or []}
        members = [
            m
            for m in guild.members.values()
            if (not ids or m.user.id in ids) and m.user.name.lower().startswith(query)
        ]
        limit = int(data.get("limit") or 0)
        if limit:
            members = members[:limit]
        chunk: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": [self.state.member_payload(guild, m) for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
        }
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        if data.get("presences"):
            chunk["presences"] = []
        await session.dispatch("GUILD_MEMBERS_CHUNK", chunk)


def _valid_shard(shard: Any) -> bool:
    return (
        isinstance(shard, list)
        and len(shard) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) for n in shard)
        and 0 <= shard[0] < shard[1]
    )
