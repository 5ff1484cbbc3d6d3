"""The emulator's REST API (Discord API v10 routes a bot uses), recording every request."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from bot.sim.entities import RecordedFile, SimChannel, SimGuild, SimMessage, SyncedCommand
from bot.sim.interaction import InteractionRegistry, SimInteraction
from bot.sim.messages import MessageService
from bot.sim.ratelimit import RateLimited, RateLimiter
from bot.sim.recording import RequestLog
from bot.sim.responses import InteractionResponder
from bot.sim.state import SimState, can_manage_messages
from bot.sim.threads import ThreadService
from bot.sim.validation import DiscordHTTPError, json_object, unknown, validate_commands

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
JSON_HEADERS = {"Content-Type": "application/json"}  # exactly this: discord.py checks equality
JSON_BODY: web.RequestKey[Any] = web.RequestKey("sim_json", object)
FILES: web.RequestKey[list[RecordedFile]] = web.RequestKey("sim_files", list)
INTERACTION = web.RequestKey("sim_interaction", SimInteraction)

Handler = Callable[[web.Request], Awaitable[Any]]


class ApiResult:
    """A handler's answer: status and JSON body (None for 204)."""

    def __init__(self, body: Any = None, status: int = 200) -> None:
        self.body = body
        self.status = status if body is not None or status != 200 else 204


class RestApi:
    """Route handlers and the middleware that rate-limits and records every request.

    Message mechanics live in :class:`MessageService`, the rules for answering interactions in
    :class:`InteractionResponder`; the handlers parse requests and call them.
    """

    def __init__(
        self,
        state: SimState,
        *,
        interactions: InteractionRegistry,
        responder: InteractionResponder,
        messages: MessageService,
        threads: ThreadService,
        requests: RequestLog,
        ratelimiter: RateLimiter,
        gateway_url: Callable[[], str],
    ) -> None:
        self.state = state
        self.interactions = interactions
        self.responder = responder
        self.messages = messages
        self.threads = threads
        self.requests = requests
        self.ratelimiter = ratelimiter
        self._gateway_url = gateway_url
        self.commands_synced = asyncio.Event()  # set by every bulk overwrite of commands

    def install(self, app: web.Application) -> None:
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/gateway", self.get_gateway),
            ("GET", "/gateway/bot", self.get_gateway_bot),
            ("GET", "/users/@me", self.get_me),
            ("GET", "/users/{user_id}", self.get_user),
            ("GET", "/oauth2/applications/@me", self.get_application),
            ("GET", "/applications/@me", self.get_application),
            ("GET", "/applications/{application_id}/commands", self.get_commands),
            ("PUT", "/applications/{application_id}/commands", self.put_commands),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self.get_commands),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self.put_commands),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self.callback),
            ("POST", "/webhooks/{application_id}/{token}", self.followup),
            (
                "GET",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self.get_webhook_message,
            ),
            (
                "PATCH",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self.edit_webhook_message,
            ),
            (
                "DELETE",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self.delete_webhook_message,
            ),
            ("GET", "/channels/{channel_id}", self.get_channel),
            ("GET", "/channels/{channel_id}/messages", self.get_messages),
            ("POST", "/channels/{channel_id}/messages", self.create_channel_message),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self.get_channel_message),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self.edit_channel_message),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self.delete_channel_message),
            ("POST", "/channels/{channel_id}/typing", self.typing),
            (
                "POST",
                "/channels/{channel_id}/messages/{message_id}/threads",
                self.start_thread_from_message,
            ),
            ("POST", "/channels/{channel_id}/threads", self.start_thread),
            (
                "PUT",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                self.add_reaction,
            ),
            ("GET", "/guilds/{guild_id}", self.get_guild),
            ("GET", "/guilds/{guild_id}/channels", self.get_guild_channels),
            ("GET", "/guilds/{guild_id}/roles", self.get_guild_roles),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, API_PREFIX + path, handler)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self.cdn)
        app.middlewares.append(self.middleware)

    # -- plumbing ----------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        body, files = await self._read_body(request)
        request[JSON_BODY] = body
        request[FILES] = files
        info = request.match_info
        resource = info.route.resource
        template = resource.canonical[len(API_PREFIX) :] if resource is not None else "UNKNOWN"
        if resource is None or not resource.canonical.startswith(API_PREFIX):
            template = "UNKNOWN"
        route = f"{request.method} {template}"
        major = ":".join(
            str(info.get(k, "")) for k in ("channel_id", "guild_id", "application_id", "token")
        )
        inter = self.interactions.by_token(info.get("token", ""))
        if inter is not None:
            request[INTERACTION] = inter  # so even a 429 is listed under its interaction
        headers: dict[str, str] = {}
        try:
            headers = self.ratelimiter.check(route, major)
            result = await handler(request)
            if not isinstance(result, ApiResult):
                raise TypeError(f"handler returned {type(result).__name__}")
            status, payload = result.status, result.body
        except RateLimited as limited:
            headers = limited.headers
            status, payload = 429, limited.body
        except DiscordHTTPError as exc:
            status, payload = exc.status, exc.body
        except web.HTTPException as exc:
            status = exc.status
            payload = {"message": f"{exc.status}: {exc.reason}", "code": 0}
        except Exception:
            # An emulator bug, not a bot bug: answer as Discord's 500 would and keep the trace.
            log.exception("emulator failed on %s %s", request.method, request.path)
            status, payload = 500, {"message": "500: Internal Server Error", "code": 0}
        self.requests.record(
            method=request.method,
            path=request.path,
            route=route,
            query=request.query,
            body=body,
            files=files,
            status=status,
            response=payload,
            interaction=request.get(INTERACTION),
        )
        if status == 204 or payload is None:
            return web.Response(status=status, headers=headers)
        return web.Response(
            status=status, body=json.dumps(payload).encode(), headers={**headers, **JSON_HEADERS}
        )

    @staticmethod
    async def _read_body(request: web.Request) -> tuple[Any, list[RecordedFile]]:
        if not request.can_read_body:
            return None, []
        ctype = request.content_type
        if ctype.startswith("multipart/"):
            files: list[RecordedFile] = []
            body: Any = None
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, aiohttp.BodyPartReader):
                    continue  # discord.py never nests multipart bodies
                data = await part.read(decode=False)
                if part.name == "payload_json":
                    body = json.loads(bytes(data))
                else:
                    files.append(
                        RecordedFile(
                            field_name=str(part.name),
                            filename=str(part.filename),
                            content_type=part.headers.get("Content-Type"),
                            data=bytes(data),
                        )
                    )
            return body, files
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError:
            raise web.HTTPBadRequest(reason="body is not JSON") from None

    def _require_bot_auth(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bot {self.state.token}":
            raise DiscordHTTPError(401, 0, "401: Unauthorized")

    @staticmethod
    def _files(request: web.Request) -> list[RecordedFile]:
        files = request[FILES]
        return list(files)

    @staticmethod
    def _json(request: web.Request) -> dict[str, Any]:
        return json_object(request[JSON_BODY])

    # -- identity ----------------------------------------------------------------------

    async def get_gateway(self, request: web.Request) -> ApiResult:
        return ApiResult({"url": self._gateway_url()})

    async def get_gateway_bot(self, request: web.Request) -> ApiResult:
        self._require_bot_auth(request)
        return ApiResult(
            {
                "url": self._gateway_url(),
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 14_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    async def get_me(self, request: web.Request) -> ApiResult:
        self._require_bot_auth(request)
        user = self.state.user_payload(self.state.bot_user)
        return ApiResult(
            user | {"verified": True, "mfa_enabled": False, "email": None, "locale": "en-US"}
        )

    async def get_user(self, request: web.Request) -> ApiResult:
        self._require_bot_auth(request)
        user = self.state.users.get(_int(request.match_info["user_id"]))
        if user is None:
            raise unknown(10013, "User")
        return ApiResult(self.state.user_payload(user))

    async def get_application(self, request: web.Request) -> ApiResult:
        self._require_bot_auth(request)
        state = self.state
        owner = (
            state.users[next(iter(state.guilds.values())).owner_id]
            if state.guilds
            else state.bot_user
        )
        return ApiResult(
            {
                "id": str(state.application_id),
                "name": state.bot_user.name,
                "description": "hfcord on the loopback Discord emulator",
                "icon": None,
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": state.user_payload(owner),
                "verify_key": "0" * 64,
                "team": None,
                "flags": 0,
                "summary": "",
                "bot": state.user_payload(state.bot_user),
                "rpc_origins": [],
                "terms_of_service_url": None,
                "privacy_policy_url": None,
                "tags": [],
                "install_params": None,
                "custom_install_url": None,
                "approximate_guild_count": len(state.guilds),
            }
        )

    # -- commands ----------------------------------------------------------------------

    def _command_table(self, request: web.Request) -> dict[tuple[str, int], SyncedCommand]:
        self._require_bot_auth(request)
        if _int(request.match_info["application_id"]) != self.state.application_id:
            raise DiscordHTTPError(403, 50001, "Missing Access")
        guild_id = request.match_info.get("guild_id")
        if guild_id is None:
            return self.state.global_commands
        if _int(guild_id) not in self.state.guilds:
            raise DiscordHTTPError(403, 50001, "Missing Access")
        return self.state.guild_commands.setdefault(_int(guild_id), {})

    async def get_commands(self, request: web.Request) -> ApiResult:
        table = self._command_table(request)
        return ApiResult([c.payload for c in table.values()])

    async def put_commands(self, request: web.Request) -> ApiResult:
        table = self._command_table(request)
        body: list[dict[str, Any]] = request[JSON_BODY]
        validate_commands(body)
        guild_raw = request.match_info.get("guild_id")
        guild_id = _int(guild_raw) if guild_raw is not None else None
        new: dict[tuple[str, int], SyncedCommand] = {}
        for raw in body:
            ctype = int(raw.get("type", 1))
            key = (raw["name"], ctype)
            previous = table.get(key)
            # Discord keeps a command's id across overwrites when its name and type stay.
            command_id = previous.id if previous is not None else self.state.ids.next()
            payload = dict(raw)
            payload.update(
                id=str(command_id),
                application_id=str(self.state.application_id),
                version=str(self.state.ids.next()),
                type=ctype,
                description=raw.get("description", ""),
                default_member_permissions=raw.get("default_member_permissions"),
                nsfw=bool(raw.get("nsfw", False)),
            )
            if guild_id is not None:
                payload["guild_id"] = str(guild_id)
            new[key] = SyncedCommand(
                id=command_id, name=raw["name"], type=ctype, guild_id=guild_id, payload=payload
            )
        table.clear()
        table.update(new)
        self.commands_synced.set()
        return ApiResult([c.payload for c in new.values()])

    # -- interactions ------------------------------------------------------------------

    async def callback(self, request: web.Request) -> ApiResult:
        inter = self.responder.for_callback(
            _int(request.match_info["interaction_id"]), request.match_info["token"]
        )
        request[INTERACTION] = inter  # so a refusal is listed under its interaction too
        result = await self.responder.respond(inter, request[JSON_BODY], self._files(request))
        if request.query.get("with_response") not in ("1", "true", "True"):
            return ApiResult(None, 204)
        return ApiResult(result)

    def _webhook_interaction(self, request: web.Request) -> SimInteraction:
        inter = self.responder.for_webhook(
            _int(request.match_info["application_id"]), request.match_info["token"]
        )
        request[INTERACTION] = inter
        self.responder.check_webhook(inter)
        return inter

    def _interaction_message(self, request: web.Request, inter: SimInteraction) -> SimMessage:
        raw = request.match_info["message_id"]
        return self.responder.message_of(inter, None if raw == "@original" else _int(raw))

    async def followup(self, request: web.Request) -> ApiResult:
        inter = self._webhook_interaction(request)
        message = await self.responder.followup(inter, self._json(request), self._files(request))
        if request.query.get("wait") in ("1", "true", "True"):
            return ApiResult(self.messages.to_json(message))
        return ApiResult(None, 204)

    async def get_webhook_message(self, request: web.Request) -> ApiResult:
        inter = self._webhook_interaction(request)
        message = self._interaction_message(request, inter)
        return ApiResult(self.messages.to_json(message))

    async def edit_webhook_message(self, request: web.Request) -> ApiResult:
        inter = self._webhook_interaction(request)
        message = self._interaction_message(request, inter)
        data = dict(self._json(request))
        data.pop("flags", None)  # flags cannot change through a webhook edit
        message = await self.messages.edit(
            message, data, self._files(request), inter=inter, finish_loading=True
        )
        return ApiResult(self.messages.to_json(message))

    async def delete_webhook_message(self, request: web.Request) -> ApiResult:
        inter = self._webhook_interaction(request)
        message = self._interaction_message(request, inter)
        await self.messages.delete(message, inter=inter)
        return ApiResult(None, 204)

    # -- channels ----------------------------------------------------------------------

    def _channel(self, request: web.Request) -> SimChannel:
        self._require_bot_auth(request)
        channel = self.state.channels.get(_int(request.match_info["channel_id"]))
        if channel is None:
            raise unknown(10003, "Channel")
        return channel

    def _channel_message(self, request: web.Request, channel: SimChannel) -> SimMessage:
        message = self.state.messages.get(_int(request.match_info["message_id"]))
        if (
            message is None
            or message.channel is not channel
            or message.deleted
            or message.ephemeral
        ):
            raise unknown(10008, "Message")
        return message

    async def get_channel(self, request: web.Request) -> ApiResult:
        return ApiResult(self.state.channel_payload(self._channel(request)))

    async def get_messages(self, request: web.Request) -> ApiResult:
        channel = self._channel(request)
        limit = max(1, min(100, int(request.query.get("limit", 50))))
        messages = [m for m in channel.messages if not m.deleted]
        if "before" in request.query:
            messages = [m for m in messages if m.id < _int(request.query["before"])]
        if "after" in request.query:
            messages = [m for m in messages if m.id > _int(request.query["after"])][:limit]
        messages = sorted(messages, key=lambda m: m.id, reverse=True)[:limit]
        return ApiResult([self.messages.to_json(m) for m in messages])

    async def create_channel_message(self, request: web.Request) -> ApiResult:
        channel = self._channel(request)
        message = await self.messages.create_channel_message(
            channel, self._json(request), self._files(request)
        )
        return ApiResult(self.messages.to_json(message))

    async def get_channel_message(self, request: web.Request) -> ApiResult:
        channel = self._channel(request)
        return ApiResult(self.messages.to_json(self._channel_message(request, channel)))

    async def edit_channel_message(self, request: web.Request) -> ApiResult:
        channel = self._channel(request)
        message = self._channel_message(request, channel)
        if message.author is not self.state.bot_user:
            raise DiscordHTTPError(403, 50005, "Cannot edit a message authored by another user")
        data = dict(self._json(request))
        data.pop("flags", None)
        message = await self.messages.edit(message, data, self._files(request))
        return ApiResult(self.messages.to_json(message))

    async def delete_channel_message(self, request: web.Request) -> ApiResult:
        channel = self._channel(request)
        message = self._channel_message(request, channel)
        guild = self.state.guild_of(channel)
        if message.author is not self.state.bot_user and not can_manage_messages(
            guild, self.state.bot_user.id
        ):
            raise DiscordHTTPError(403, 50013, "Missing Permissions")
        await self.messages.delete(message)
        return ApiResult(None, 204)

    async def typing(self, request: web.Request) -> ApiResult:
        self._channel(request)
        return ApiResult(None, 204)

    async def start_thread_from_message(self, request: web.Request) -> ApiResult:
        channel = self._channel(request)
        message = self.state.messages.get(_int(request.match_info["message_id"]))
        if message is None or message.ephemeral:
            raise unknown(10008, "Message")
        thread = await self.threads.start_from_message(
            channel, message, self._json(request), self.state.bot_user
        )
        return ApiResult(self.state.channel_payload(thread), 201)

    async def start_thread(self, request: web.Request) -> ApiResult:
        channel = self._channel(request)
        thread = await self.threads.start_without_message(
            channel, self._json(request), self.state.bot_user
        )
        return ApiResult(self.state.channel_payload(thread), 201)

    async def add_reaction(self, request: web.Request) -> ApiResult:
        channel = self._channel(request)
        message = self._channel_message(request, channel)
        self.messages.add_reaction(message, request.match_info["emoji"], self.state.bot_user)
        return ApiResult(None, 204)

    # -- guilds ------------------------------------------------------------------------

    def _guild(self, request: web.Request) -> SimGuild:
        self._require_bot_auth(request)
        guild = self.state.guilds.get(_int(request.match_info["guild_id"]))
        if guild is None:
            raise unknown(10004, "Guild")
        return guild

    async def get_guild(self, request: web.Request) -> ApiResult:
        guild = self._guild(request)
        payload = self.state.guild_payload(guild, intents=0)
        for key in (
            "members",
            "channels",
            "threads",
            "presences",
            "voice_states",
            "joined_at",
            "large",
        ):
            payload.pop(key, None)
        return ApiResult(payload)

    async def get_guild_channels(self, request: web.Request) -> ApiResult:
        guild = self._guild(request)
        return ApiResult([self.state.channel_payload(c) for c in guild.channels if not c.is_thread])

    async def get_guild_roles(self, request: web.Request) -> ApiResult:
        guild = self._guild(request)
        return ApiResult([self.state.role_payload(r) for r in guild.roles.values()])

    async def get_member(self, request: web.Request) -> ApiResult:
        guild = self._guild(request)
        member = guild.members.get(_int(request.match_info["user_id"]))
        if member is None:
            raise unknown(10007, "Member")
        return ApiResult(self.state.member_payload(guild, member))

    # -- CDN ---------------------------------------------------------------------------

    async def cdn(self, request: web.Request) -> web.StreamResponse:
        attachment = self.state.attachments.get(_int(request.match_info["attachment_id"]))
        if attachment is None or attachment.filename != request.match_info["filename"]:
            raise web.HTTPNotFound()
        return web.Response(
            body=attachment.data,
            headers={"Content-Type": attachment.content_type or "application/octet-stream"},
        )


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DiscordHTTPError(
            400,
            50035,
            "Invalid Form Body",
            {
                "id": {
                    "_errors": [
                        {
                            "code": "NUMBER_TYPE_COERCE",
                            "message": f"Value {value!r} is not snowflake.",
                        }
                    ]
                }
            },
        ) from None
