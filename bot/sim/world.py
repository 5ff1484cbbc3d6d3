"""The emulator's named world: two servers, an admin and a plain member, a channel and its thread."""

from __future__ import annotations

from dataclasses import dataclass

from bot.sim.entities import ADMINISTRATOR, SimChannel, SimGuild, SimRole, SimUser
from bot.sim.state import SimState


@dataclass(frozen=True)
class SimWorld:
    """The entities drivers refer to by name (all also live in the emulator's ``SimState``).

    ``admin`` owns both servers and has the Admins role (Administrator) in ``guild``;
    ``member`` belongs to both with no role; ``thread`` is a public thread of ``channel``.
    """

    admin: SimUser
    member: SimUser
    guild: SimGuild
    admin_role: SimRole
    channel: SimChannel
    thread: SimChannel
    other_guild: SimGuild
    other_channel: SimChannel


def build_default_world(state: SimState) -> SimWorld:
    """Create the default world in ``state`` with new ids."""
    admin = state.add_user("admin")
    member = state.add_user("member")
    guild = state.add_guild("Test Server", owner=admin)
    admin_role = state.add_role(guild, "Admins", permissions=ADMINISTRATOR)
    guild.members[admin.id].roles.append(admin_role.id)
    state.add_member(guild, member)
    channel = state.add_channel(guild, "general")
    thread = state.add_thread(channel, "general-thread", owner=member)
    other_guild = state.add_guild("Other Server", owner=admin)
    state.add_member(other_guild, member)
    other_channel = state.add_channel(other_guild, "other-general")
    return SimWorld(
        admin=admin,
        member=member,
        guild=guild,
        admin_role=admin_role,
        channel=channel,
        thread=thread,
        other_guild=other_guild,
        other_channel=other_channel,
    )
