"""Saving the emulator's world to a JSON file and loading it back.

The playground keeps its servers, channels, threads, users and roles in its data folder, so the
ids the bot stored data under (a channel's context, a server's jobs and promoted models) mean
the same places in the next run, as Discord's ids do. Messages and DM channels are not saved:
a new run starts with empty channels, as a restarted bot sees them. Ids are snowflakes; the
emulator's id factory moves past every loaded id, so ids stay unique across runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.sim.entities import SimChannel, SimGuild, SimMember, SimRole, SimUser
from bot.sim.state import SimState
from bot.sim.world import SimWorld

WORLD_FORMAT = 1
_NAMED = (
    "admin",
    "member",
    "guild",
    "admin_role",
    "channel",
    "thread",
    "other_guild",
    "other_channel",
)


class WorldFileError(Exception):
    """A world file that cannot be loaded; the message says which file and why."""


@dataclass(frozen=True)
class SavedWorld:
    """A world file's content, read and checked for its format (restored by the emulator)."""

    path: Path
    application_id: int
    data: Mapping[str, Any]

    def describe(self) -> str:
        """What the world holds, for a user about to discard it."""
        guilds = self.data.get("guilds") or []
        names = ", ".join(str(g.get("name")) for g in guilds)
        channels = sum(len(g.get("channels") or []) for g in guilds)
        users = len(self.data.get("users") or [])
        return f"{len(guilds)} servers ({names}), {channels} channels and threads, {users} users"


def world_to_json(state: SimState, world: SimWorld) -> dict[str, Any]:
    """The world's users, guilds (roles, members, channels, threads) and named entities."""
    return {
        "format": WORLD_FORMAT,
        "application_id": str(state.application_id),
        "users": [
            {"id": str(u.id), "name": u.name, "global_name": u.global_name, "bot": u.bot}
            for u in state.users.values()
            if u is not state.bot_user
        ],
        "guilds": [_guild_json(g) for g in state.guilds.values()],
        "named": {name: str(getattr(world, name).id) for name in _NAMED},
    }


def _guild_json(guild: SimGuild) -> dict[str, Any]:
    return {
        "id": str(guild.id),
        "name": guild.name,
        "owner_id": str(guild.owner_id),
        "roles": [
            {
                "id": str(r.id),
                "name": r.name,
                "permissions": str(r.permissions),
                "position": r.position,
                "managed": r.managed,
                "mentionable": r.mentionable,
                "color": r.color,
            }
            for r in guild.roles.values()
        ],
        "members": [
            {
                "user_id": str(m.user.id),
                "roles": [str(r) for r in m.roles],
                "joined_at": m.joined_at.isoformat(),
                "nick": m.nick,
            }
            for m in guild.members.values()
        ],
        "channels": [
            {
                "id": str(c.id),
                "type": c.type,
                "name": c.name,
                "parent_id": str(c.parent_id) if c.parent_id is not None else None,
                "position": c.position,
                "owner_id": str(c.owner_id) if c.owner_id is not None else None,
            }
            for c in guild.channels
        ],
    }


def save_world(path: Path, state: SimState, world: SimWorld) -> None:
    """Write the world to ``path`` atomically (a crash never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    partial.write_text(json.dumps(world_to_json(state, world), indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


def read_world(path: Path) -> SavedWorld:
    """Read a world file written by :func:`save_world`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise WorldFileError(f"cannot read the world file {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != WORLD_FORMAT:
        raise WorldFileError(f"{path} is not a world file of format {WORLD_FORMAT}")
    try:
        application_id = int(data["application_id"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WorldFileError(f"{path} has no valid application_id") from exc
    return SavedWorld(path=path, application_id=application_id, data=data)


def restore_world(state: SimState, saved: SavedWorld) -> SimWorld:
    """Put the saved entities into ``state`` (made with the saved application id); the world."""
    if state.application_id != saved.application_id:
        raise ValueError("make the SimState with the saved world's application_id")
    try:
        return _restore(state, saved.data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise WorldFileError(f"{saved.path} is damaged ({type(exc).__name__}: {exc})") from exc


def _restore(state: SimState, data: Mapping[str, Any]) -> SimWorld:
    users = [
        SimUser(
            id=int(u["id"]),
            name=str(u["name"]),
            global_name=u.get("global_name"),
            bot=bool(u.get("bot", False)),
        )
        for u in data["users"]
    ]
    known = {u.id: u for u in users} | {state.bot_user.id: state.bot_user}
    guilds = [_restore_guild(g, known) for g in data["guilds"]]
    state.restore(users, guilds, [])
    named = {name: int(data["named"][name]) for name in _NAMED}
    guild = state.guilds[named["guild"]]
    return SimWorld(
        admin=state.users[named["admin"]],
        member=state.users[named["member"]],
        guild=guild,
        admin_role=guild.roles[named["admin_role"]],
        channel=state.channels[named["channel"]],
        thread=state.channels[named["thread"]],
        other_guild=state.guilds[named["other_guild"]],
        other_channel=state.channels[named["other_channel"]],
    )


def _restore_guild(data: Mapping[str, Any], users: Mapping[int, SimUser]) -> SimGuild:
    guild = SimGuild(id=int(data["id"]), name=str(data["name"]), owner_id=int(data["owner_id"]))
    for r in data["roles"]:
        role = SimRole(
            id=int(r["id"]),
            guild_id=guild.id,
            name=str(r["name"]),
            permissions=int(r["permissions"]),
            position=int(r["position"]),
            managed=bool(r["managed"]),
            mentionable=bool(r["mentionable"]),
            color=int(r["color"]),
        )
        guild.roles[role.id] = role
    if guild.id not in guild.roles:
        raise ValueError(f"guild {guild.id} has no @everyone role")
    for m in data["members"]:
        user = users[int(m["user_id"])]
        roles = [int(r) for r in m["roles"]]
        if not set(roles) <= guild.roles.keys():
            raise ValueError(f"member {user.id} has a role guild {guild.id} does not")
        guild.members[user.id] = SimMember(
            user=user,
            guild_id=guild.id,
            roles=roles,
            joined_at=dt.datetime.fromisoformat(str(m["joined_at"])),
            nick=m.get("nick"),
        )
    for c in data["channels"]:
        guild.channels.append(
            SimChannel(
                id=int(c["id"]),
                type=int(c["type"]),
                name=str(c["name"]),
                guild_id=guild.id,
                parent_id=int(c["parent_id"]) if c.get("parent_id") is not None else None,
                position=int(c["position"]),
                owner_id=int(c["owner_id"]) if c.get("owner_id") is not None else None,
            )
        )
    return guild
