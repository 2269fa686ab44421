"""Key names. A task's keys carry its id as a hash tag (`{task_id}`), so a Redis Cluster
would keep them in one slot; the scheduling keys (queue, round, stream) are shared. The Lua
scripts build the same names from the prefix (`lua/common.lua`): change both together."""

from __future__ import annotations

import hashlib

GROUP = "workers"  # the stream's consumer group: every worker host is a consumer


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.jobs = f"{prefix}:jobs"
        self.pending = f"{prefix}:pending"
        self.seq = f"{prefix}:seq"
        self.watched = f"{prefix}:watched"
        self.hosts = f"{prefix}:hosts"
        self.offer = f"{prefix}:offer"  # what the worker hosts last seen alive read
        self.work_channel = f"{prefix}:work"

    def task(self, task_id: str, kind: str) -> str:
        """kind: task, pages, result, todo, flight, doc, doc:part, events (a channel)."""
        return f"{self.prefix}:{{{task_id}}}:{kind}"

    def request(self, tenant: str, request_id: str) -> str:
        digest = hashlib.sha256(f"{tenant}\x00{request_id}".encode()).hexdigest()
        return f"{self.prefix}:request:{digest}"

    def host(self, host_id: str) -> str:
        return f"{self.prefix}:host:{host_id}"

    @staticmethod
    def tenant_hash(tenant: str) -> str:
        """Tenants appear in key names only hashed (a name may hold any character)."""
        return hashlib.sha256(tenant.encode()).hexdigest()[:32]
