"""Read phases 1-6 → MAS rows (data-migration.md §3-§7).

Streams each phase's query, classifies every row (migrate, or skip with a reason from §14.5), derives
ids (§5) and hands row tuples to a sink (the MAS writer, or nothing for a plan/verify run). The
column order of the tuples is ``masschema.COPY_COLUMNS``, timestamps and IP addresses in the binary
forms of migrator/copytypes.py. Nothing here holds per-user state beyond the current user and device,
except the bounded verification sample.
"""
from __future__ import annotations

import sqlite3
import uuid
from collections import Counter
from typing import Any, Protocol

from engine.errors import DatabaseError

from . import masschema, queries
from .copytypes import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, pg_timestamp
from .ids import IdFactory
from .ipaddr import inet_wire
from .progress import Progress
from .queries import (DEVICE_HIDDEN, DEVICE_HIDDEN_NULL, HAS_DEVICE, TOKEN_LATEST, TOKEN_PAIRED, TOKEN_PUPPET,
                      TOKEN_REFRESH, TOKEN_SUPERSEDED, USER_APPSERVICE)
from .report import MigrationReport
from .samples import Sampler, UserFacts, digest
from .source import SynapseSource

PASSWORD_SCHEME_VERSION = 1  # MAS must map version 1 to bcrypt (`password-scheme-missing`)


class Sink(Protocol):
    """Receives MAS rows; ``add`` is called once per row."""

    def add(self, table: str, row: tuple) -> None:
        """Queue ``row`` for ``table``."""

    def complete(self, tables: tuple[str, ...]) -> None:
        """No more rows will come for ``tables`` (the MAS writer rebuilds their indexes and keys)."""


class NullSink:
    """Discards rows: plan and standalone-verify runs only count."""

    def add(self, table: str, row: tuple) -> None:
        """Ignore the row."""

    def complete(self, tables: tuple[str, ...]) -> None:
        """Nothing to finish."""


# Stands for "no user" or "no device" before the first row: equal to no value a row can hold.
_NOBODY = object()


# A token row's flags for a kept refresh pair: paired, and the latest of its pairs (queries.SESSIONS).
_KEPT_PAIR = TOKEN_PAIRED | TOKEN_LATEST

def ms_to_pg(ms: int, anomalies: Counter) -> int:
    """Milliseconds since the epoch as a binary `timestamptz` value (migrator/copytypes.py).

    A value outside the years 1-9999 (a unit mistake, a broken clock) is written as the nearest of
    those bounds and counted (`timestamp-out-of-range`): the migration never stops for a row that
    `check` does not report (data-migration.md §14.2), and MAS reads every value it writes."""
    value = pg_timestamp(int(ms))
    if value is None:
        anomalies["timestamp-out-of-range"] += 1
        value = pg_timestamp(MIN_TIMESTAMP_MS if ms < MIN_TIMESTAMP_MS else MAX_TIMESTAMP_MS)
    return value


def localpart(user_id: str, server_name: str) -> str | None:
    """The localpart of ``@localpart:server_name`` (split at the first `:`), or None when it is not one."""
    if not user_id or not user_id.startswith("@") or ":" not in user_id:
        return None
    local, _, server = user_id[1:].partition(":")
    return local if server == server_name else None


# The owning user's columns as the phase queries return them (queries.USER_COLS), unpacked in each
# phase's loop: exists, creation_ts, appservice. (An object per row for them cost about a microsecond
# a row.)

def creation_ms(creation_ts: int | None) -> int:
    """The user's creation time in ms (NULL counts as the epoch, §7 row 31)."""
    return int(creation_ts) * 1000 if creation_ts is not None else 0


def session_skip(guest: Any, deactivated: Any, appservice: Any) -> str | None:
    """Why a user's tokens and devices are not migrated, if they are not."""
    if appservice:
        return "appservice-user"
    if guest:
        return "guest-user"
    if deactivated:
        return "deactivated-user"
    return None


class Pipeline:
    """One pass over Synapse producing MAS rows and the per-entity counts of the report."""

    def __init__(self, source: SynapseSource, *, ids: IdFactory, report: MigrationReport, sink: Sink,
                 mapping: dict[str, str], server_name: str, run_start_ms: int,
                 ignore_missing_providers: bool = False, progress: Progress | None = None,
                 sampler: Sampler | None = None, partition: tuple[int, int] | None = None):
        self.source = source
        self.ids = ids
        self.report = report
        self.sink = sink
        self.mapping = {k: uuid.UUID(str(v)) if not isinstance(v, uuid.UUID) else v for k, v in mapping.items()}
        self.server_name = server_name
        self.run_start_ms = run_start_ms
        self.ignore_missing = ignore_missing_providers
        self.progress = progress or Progress()
        self.sampler = sampler or Sampler(0)
        # (part, parts): only this worker's share of the users (migrator/parallel.py); None: everything.
        self.partition = partition
        self.params = {"run_start": run_start_ms}
        self.entities = report.entities
        self.anomalies = report.anomalies
        self._phase: tuple[str, tuple[str, ...]] = ("reading", ())  # the phase being read, for errors
        self._last_user: tuple = (None, None, None)
        # One id maker per kind (migrator/ids.py): ids are the 128-bit integers of their UUIDs.
        self._user_id = ids.maker("users")
        self._session_id = ids.maker("compat_sessions")
        self._password_id = ids.maker("user_passwords")
        self._email_id = ids.maker("user_emails")
        self._link_id = ids.maker("upstream_oauth_links")
        self._deviceless_id = ids.maker("compat_sessions_deviceless")
        self._access_id = ids.maker("compat_access_tokens")
        self._refresh_id = ids.maker("compat_refresh_tokens")

    # -- helpers ---------------------------------------------------------------------------------
    def user_id(self, name: str, creation_ms: int) -> int:
        """The MAS user id of Synapse user ``name`` (same value in every phase).

        The last derivation is remembered: a user's tokens and devices usually arrive one after the
        other, so this saves an HMAC per row with constant memory.
        """
        last = self._last_user
        if last[0] == name and last[1] == creation_ms:
            return last[2]
        uid = self._user_id(creation_ms, name)
        self._last_user = (name, creation_ms, uid)
        return uid

    def device_session_id(self, name: str, device_id: str, first_ms: int | None, last_seen: int | None) -> int:
        """A device session's id: earliest migrated token, else `last_seen`, else run start (§5.2)."""
        t = first_ms if first_ms is not None else (last_seen if last_seen is not None else self.run_start_ms)
        return self._session_id(t, name, device_id)

    def _orphan(self, table: str) -> DatabaseError:
        return DatabaseError(f"a `{table}` row refers to a user that does not exist",
                             hint="run `syn2mas check` (rule orphan-rows) and delete the orphan rows in Synapse")

    def _stream(self, phase: str, tables: tuple[str, ...], query: str, note: str = "") -> Any:
        self._phase = (phase, tables)
        self.progress.phase(phase, sum(self.source.estimate(t) for t in tables), note)
        tick = self.progress.tick
        for rows in self.source.batches(queries.for_partition(query, self.partition), self.params):
            tick(len(rows))
            yield from rows

    # -- phases ----------------------------------------------------------------------------------
    def run(self) -> None:
        """Run the read phases in order (users first), then the global anomalies."""
        self.run_phases()
        self.count_unpaired_refresh_tokens()
        self.progress.done()

    def run_phases(self) -> None:
        """The read phases over this pipeline's users (all of them, or its partition)."""
        try:
            self.phase_users()
            self.sampler.freeze()
            self.phase_threepids()
            self.phase_links()
            self.sink.complete(masschema.ACCOUNT_TABLES)
            self.phase_sessions()
        except (sqlite3.Error, ValueError, TypeError, AttributeError, UnicodeError) as exc:
            if self.source.kind != "sqlite":
                raise
            raise self._odd_sqlite_value(exc) from None

    def _odd_sqlite_value(self, exc: Exception) -> DatabaseError:
        """SQLite keeps any value in any column (text in an integer column, a blob for a text, bytes that
        are not UTF-8), which PostgreSQL never holds: name the phase and how to find the rows. The
        exception's own text is left out: it may quote the value, a token for instance."""
        phase, tables = self._phase
        table = tables[0] if len(tables) == 1 else "<table>"
        where = f" (in {', '.join(f'`{t}`' for t in tables)})" if tables else ""
        return DatabaseError(
            f"{phase}: a value of an unexpected type or encoding in the SQLite database{where} "
            f"({type(exc).__name__}); nothing was written",
            hint=f"find it with `SELECT rowid, typeof(<column>) FROM {table} WHERE typeof(<column>) NOT IN "
                 "('integer', 'null')` for a number column (('text', 'null') for a text column); text that is not "
                 f"UTF-8 shows in `sqlite3 FILE '.dump {table}'`. Correct it, or port the database to PostgreSQL "
                 "with synapse_port_db first")

    def count_unpaired_refresh_tokens(self) -> None:
        """The `unpaired-refresh-token` anomaly: counted once over all refresh tokens."""
        self.anomalies["unpaired-refresh-token"] += int(self.source.scalar(queries.UNPAIRED_REFRESH_TOKENS) or 0)

    def phase_users(self) -> None:
        """Phase 1: `users` → `users`, `user_passwords`."""
        users, passwords = self.entities["users"], self.entities["passwords"]
        query = queries.users_query(self.source.user_columns())
        for name, pw_hash, admin, deactivated, locked, creation_ts, guest, appservice, approved in \
                self._stream("phase 1 users", ("users",), query):
            users.read += 1
            if pw_hash is not None:
                passwords.read += 1
            if appservice:
                users.skip("appservice-user")
                if pw_hash is not None:
                    passwords.skip("appservice-user")
                continue
            local = localpart(name, self.server_name)
            if local is None:
                raise DatabaseError("a Synapse user id does not belong to this server",
                                    hint="run `syn2mas check` (rule foreign-server-users)")
            if creation_ts is None:
                self.anomalies["creation-ts-missing"] += 1
                created_ms = 0
            else:
                created_ms = int(creation_ts) * 1000
            created = ms_to_pg(created_ms, self.anomalies)
            unapproved = approved is not None and not approved
            if unapproved:
                self.anomalies["unapproved"] += 1  # team decision (§7 row 33): imported locked
            uid = self.user_id(name, created_ms)
            is_locked = bool(locked) or unapproved
            self.sink.add("users", (uid, local, created, created if is_locked else None, bool(admin), bool(guest),
                                    created if deactivated else None))
            users.migrated += 1
            stored_pw = None
            if pw_hash is not None:
                if pw_hash == "":
                    passwords.skip("empty-password-hash")
                else:
                    self.sink.add("user_passwords", (self._password_id(created_ms, name), uid,
                                                     pw_hash, created, PASSWORD_SCHEME_VERSION))
                    passwords.migrated += 1
                    stored_pw = pw_hash
            # Called (and the hash digested) only when the user joins the sample.
            self.sampler.offer(name, lambda: UserFacts(local, bool(admin), bool(guest), is_locked, bool(deactivated),
                                                       digest(stored_pw) if stored_pw is not None else None))

    def phase_threepids(self) -> None:
        """Phase 2: `user_threepids` → `user_emails` (medium exactly `email`) or unsupported ids."""
        for user, medium, address, added_at, exists, creation_ts, appservice in \
                self._stream("phase 2 threepids", ("user_threepids",), queries.THREEPIDS):
            is_email = medium == "email"
            stats = self.entities["emails" if is_email else "unsupported_threepids"]
            stats.read += 1
            if appservice:
                stats.skip("appservice-user")
                continue
            if not exists:
                raise self._orphan("user_threepids")
            uid = self.user_id(user, creation_ms(creation_ts))
            created = ms_to_pg(added_at, self.anomalies)
            facts = self.sampler.get(user)
            if is_email:
                self.sink.add("user_emails", (self._email_id(added_at, user, medium, address), uid,
                                              address, created))
                if facts:
                    facts.emails.add(digest(address))
            else:
                self.sink.add("user_unsupported_third_party_ids", (uid, medium, address, created))
                if facts:
                    facts.unsupported.add((medium, digest(address)))
            stats.migrated += 1

    def phase_links(self) -> None:
        """Phase 3: `user_external_ids` → `upstream_oauth_links` through the provider mapping."""
        stats = self.entities["links"]
        for user, provider, subject, exists, creation_ts, appservice in \
                self._stream("phase 3 external ids", ("user_external_ids",), queries.LINKS):
            stats.read += 1
            if appservice:
                stats.skip("appservice-user")
                continue
            mas_provider = self.mapping.get(provider)
            if mas_provider is None:
                if not self.ignore_missing:
                    raise DatabaseError(f"users are linked to Synapse provider `{provider}`, which no MAS provider "
                                        "maps (`synapse_idp_id`)",
                                        hint="add the provider to MAS, or pass --ignore-missing-auth-providers")
                stats.skip("unmapped-provider")
                continue
            if not exists:
                raise self._orphan("user_external_ids")
            created_ms = creation_ms(creation_ts)
            self.sink.add("upstream_oauth_links", (self._link_id(created_ms, provider, subject),
                                                   mas_provider, self.user_id(user, created_ms), subject,
                                                   ms_to_pg(created_ms, self.anomalies)))
            stats.migrated += 1
            facts = self.sampler.get(user)
            if facts:
                facts.links.add((mas_provider, digest(subject)))

    def _token_times(self, created_ms: int, valid_until: int | None) -> tuple[int, int | None]:
        """A migrated token's creation and expiry in binary form (the expiry is checked first)."""
        expires = None
        if valid_until is not None:
            expires = ms_to_pg(valid_until, self.anomalies)
            if valid_until < self.run_start_ms:
                self.anomalies["expired"] += 1
        return ms_to_pg(created_ms, self.anomalies), expires

    def phase_sessions(self) -> None:
        """Phase 4: devices → device `compat_sessions`; access tokens → `compat_access_tokens` (a
        deviceless session each when they have no device); kept refresh pairs → also
        `compat_refresh_tokens`. One stream (queries.SESSIONS): each user's row, then the user's
        deviceless tokens, then each device followed by its tokens, earliest first.

        A device's session is written at its first migrated token, whose time is the earliest of the
        tokens that decide the session time (§5.2), or, when none comes, once the device's rows end
        (`last_seen`, else the run start). Only that one device is held.
        """
        ent = self.entities
        tokens, refresh, deviceless, devices = (ent["access_tokens"], ent["refresh_tokens"],
                                                ent["deviceless_sessions"], ent["devices"])
        sink_add, sampler_get = self.sink.add, self.sampler.get
        # The owner of the current rows: its name, whether its `users` row exists, its creation time
        # (ms), admin flag, and why its sessions are not migrated (None: they are).
        user: object = _NOBODY
        exists, created_ms, admin, user_skip = False, 0, False, None
        # The current device: its key, whether it is hidden, its row while its session waits for a
        # time (None once written, or when it is not migrated), the earliest deciding token time seen,
        # and its session id once written.
        device_key: tuple = (_NOBODY, None)
        hidden = False
        held: tuple | None = None
        first_ms: int | None = None
        session: int | None = None

        def write_session(row: tuple, start_ms: int | None) -> int:
            """The held device's `compat_sessions` row, at session time ``start_ms`` (None: none seen)."""
            name, device_id, display_name, last_seen, ip, user_agent, hidden_null, owner_ms, owner_admin = row
            if hidden_null:
                self.anomalies["hidden-null-device"] += 1
            if device_id == "guest_device":
                self.anomalies["non-guest-guest-device"] += 1
            last_active = ms_to_pg(last_seen, self.anomalies) if last_seen is not None else None
            sid = self.device_session_id(name, device_id, start_ms, last_seen)
            address, invalid = inet_wire(ip)
            if invalid:
                self.anomalies["invalid-ip"] += 1
            sink_add("compat_sessions", (sid, self.user_id(name, owner_ms), device_id, display_name,
                                         ms_to_pg(sid >> 80, self.anomalies), owner_admin,
                                         last_active, address, user_agent))
            devices.migrated += 1
            facts = sampler_get(name)
            if facts:
                facts.devices.add(device_id)
            return sid

        for kind, name, device_id, t, int_a, text_a, int_b, int_c, text_b, text_c, flags in \
                self._stream("phase 4 devices and tokens", ("users", "devices", "access_tokens"),
                             queries.SESSIONS, "the Synapse server sorts them before it sends the first "
                             "(minutes on a large server), so the first progress line comes later"):
            # The columns by row kind: queries.SESSIONS.
            if held is not None and (kind != 2 or name != user):  # the held device has no more tokens
                write_session(held, first_ms)
                held = None
            if kind == 0:  # t: creation_ts; int_a, int_b, int_c: admin, is_guest, deactivated
                user, exists = name, True
                created_ms = creation_ms(t)
                admin = bool(int_a)
                user_skip = session_skip(int_b, int_c, flags & USER_APPSERVICE)
                continue
            if name != user:  # a device or token whose user does not exist
                user, exists, created_ms, admin, user_skip = name, False, 0, False, None

            if kind == 1:  # t: last_seen; text_a, text_b, text_c: display_name, user_agent, ip
                device_key, hidden, first_ms, session = (name, device_id), bool(flags & DEVICE_HIDDEN), None, None
                devices.read += 1
                if user_skip:
                    devices.skip(user_skip)
                elif hidden:
                    devices.skip("hidden-device")
                elif not exists:
                    raise self._orphan("devices")
                else:
                    held = (name, device_id, text_a, t, text_c, text_b, flags & DEVICE_HIDDEN_NULL, created_ms,
                            admin)
                continue

            # kind 2, a token: t created; int_a id; text_a token; int_b valid_until_ms; the refresh token's
            # id int_c and token text_b
            if not flags & HAS_DEVICE:
                device_id = None  # the stream sorts it as ''
            tokens.read += 1
            if flags & TOKEN_PUPPET:
                tokens.skip("puppet-token")
                continue
            on_device = device_id is not None and device_key[0] == name and device_key[1] == device_id
            has_refresh = flags & TOKEN_REFRESH
            if has_refresh:
                superseded = flags & TOKEN_SUPERSEDED
                # each refresh token is counted on its kept pair's row
                counts_refresh = flags & _KEPT_PAIR == _KEPT_PAIR
                if on_device and first_ms is None and counts_refresh and not superseded:
                    first_ms = t  # a kept pair decides the session time, migrated or not
                if user_skip:
                    reason = user_skip
                elif not flags & TOKEN_PAIRED:
                    reason = "refresh-token-missing"
                elif not on_device:
                    reason = "device-missing"
                elif hidden:
                    reason = "hidden-device"
                elif superseded:
                    reason = "refresh-superseded"
                elif not flags & TOKEN_LATEST:
                    reason = "refresh-token-shared"
                else:
                    reason = None
                if reason:
                    tokens.skip(reason)
                    if counts_refresh:
                        refresh.read += 1
                        refresh.skip(reason)
                    continue
            else:
                if on_device and first_ms is None:
                    first_ms = t  # so does every device token without a refresh token
                if device_id is None:
                    deviceless.read += 1
                if user_skip:
                    tokens.skip(user_skip)
                    if device_id is None:
                        deviceless.skip(user_skip)
                    continue
                if device_id is not None and not on_device:
                    tokens.skip("device-missing")
                    continue
                if device_id is not None and hidden:
                    tokens.skip("hidden-device")
                    continue
            if not exists:
                raise self._orphan("access_tokens")
            created, expires = self._token_times(t, int_b)
            if device_id is None:
                token_session = self._deviceless_id(t, int_a)
                sink_add("compat_sessions", (token_session, self.user_id(name, created_ms), None, None, created,
                                             admin, None, None, None))
                deviceless.migrated += 1
            else:
                if held is not None:  # this token is the device's first migrated one: its time is known
                    session = write_session(held, first_ms)
                    held = None
                token_session = session
            access_id = self._access_id(t, int_a)
            sink_add("compat_access_tokens", (access_id, token_session, text_a, created, expires))
            tokens.migrated += 1
            if has_refresh:
                sink_add("compat_refresh_tokens", (self._refresh_id(t, int_c), token_session, access_id, text_b,
                                                   created))
                refresh.read += 1
                refresh.migrated += 1
            facts = sampler_get(name)
            if facts:
                facts.access_tokens.add(digest(text_a))
                if has_refresh:
                    facts.refresh_tokens.add(digest(text_b))
        if held is not None:
            write_session(held, first_ms)
