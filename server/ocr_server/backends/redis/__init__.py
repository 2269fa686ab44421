"""The Redis backend: stateless front ends and worker hosts sharing one Redis (or Valkey).

Every state change is one Lua script (`lua/`), so any number of front ends and worker hosts
stay consistent without a read-modify-write from a client. See docs/scale-out.md.
"""
