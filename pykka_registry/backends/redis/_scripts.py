"""The Redis backend's Lua scripts, each with its contract (KEYS, ARGV,
return value) in a header above it, as redis-py's ``lock.py`` documents its
own; :class:`Scripts` registers them once per client.

Pure data: no I/O at import. Every change a script makes is atomic (Redis
runs one script at a time) and is appended to the change stream with the
counter value it took.

Guarantees
----------
* **One claim, one script.** Checking the holder and its lease, taking the
  fencing token, writing the name and its event happen in one script: two
  processes never both hold a name.
* **Fenced deletes and updates.** ``RELEASE`` and ``UPDATE`` change a name
  only if it still carries the token and node given, and (fencing by
  incarnation) never a claim of another live incarnation of the caller's
  node id: a process paused past its lease whose node id was taken by
  another process meanwhile cannot delete or change that process's claims,
  nor take its lease (``ACQUIRE``), drop it (``DROP_LEASE``) or delete its
  inbox (``LEAVE``).
* **A stray lease key cannot wedge a script.** Another node's lease key is
  read with ``pcall`` (``LEASE``): a key of another type there means no
  lease, never an error that fails every start, re-read, claim or reap that
  meets it; a held set, ``P:nodes`` or ``P:names`` of another type is read
  as empty where a script only reads it.
* **Group keys cannot wedge writes.** A ``P:gnodes`` that is not a set, or
  a ``P:gseq`` that is not a counter, is replaced by the group script that
  meets it (the counter resumes above every value handed out).
* **Inboxes cannot be wedged.** ``SEND``, ``SEND_ASK`` and ``POST`` append
  with an id assigned by Redis, and replace an inbox whose ids are
  exhausted or that is not a stream (``INBOX``).
* **No SCRIPT EXISTS per call.** A registered script runs by ``EVALSHA``;
  redis-py loads it again only after a ``NOSCRIPT`` reply (a restarted or
  flushed Redis). In a pipeline a script runs by plain ``EVALSHA`` too
  (:meth:`._store.Store.pipelined`: loaded and run again after a
  ``NOSCRIPT`` reply), or by ``EVAL`` with its text (``SEND``, ``SEND_ASK``:
  small, and a pipelined ``BLPOP`` must not wait for a script that did not
  run), never after a ``SCRIPT EXISTS``.

Keys built inside a script: a name's previous holder (``P:held:<node>``,
``P:node:<node>``) is known only once the name hash is read, so ``CLAIM``,
``UPDATE``, ``RELEASE``, ``SNAPSHOT`` and ``LEAVE`` build those from the
prefix in ``ARGV`` (a single Redis or one hash slot per prefix, not a
cluster across slots).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Scripts"]


# Key layout (P = prefix): P:epoch, P:seq, P:events, P:names (set of name keys),
# P:nodes (set of node ids that took a lease), P:name:<json [ns, svc]> (hash),
# P:node:<id> (lease: value = incarnation), P:nodeinfo:<id> (JSON),
# P:held:<id> (set of the node's name keys), P:inbox:<id>.
#
# Every change increments P:seq and is appended to P:events with two fields:
# "s", the new value of P:seq, and "e", the change as JSON (one field keeps
# parsing cheap). A reader sees a gap as a jump in "s". The stream ids are
# assigned by Redis ("*"), never derived from the counter: an entry someone
# else appended with an id far in the future cannot make later appends fail
# (if the stream's ids are exhausted, or the key is not a stream, the script
# replaces the stream: readers then see a gap and re-read everything).
# A claim's fencing token is the sequence number of its event.

# Another node's lease key may hold anything (a stray key): read as no lease,
# never an error that would fail every script that meets it.
LEASE = """
local function lease(key)
  local v = redis.pcall('GET', key)
  if type(v) == 'string' then return v end
  return false
end
"""

FEED = LEASE + """
local function feed(stream, maxlen, seq, event)
  local ok = redis.pcall('XADD', stream, 'MAXLEN', '~', maxlen, '*', 's', seq, 'e', event)
  if type(ok) == 'table' and ok.err then
    if string.find(ok.err, 'OOM', 1, true) then error(ok) end
    redis.call('DEL', stream)
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 's', seq, 'e', event)
  end
end
"""

# KEYS: name hash, P:names, P:events, P:seq, own lease, own held set.
# ARGV: prefix, node id, incarnation, urn, actor class, metadata JSON, name
#       JSON, replace token ('' = none), feed maxlen.
# Returns {'ok', token} | {'nolease'} |
#         {'held', node, inc, tok, urn, cls, meta, rev} (a live holder).
CLAIM = FEED + """
if lease(KEYS[5]) ~= ARGV[3] then return {'nolease'} end
local cur = redis.pcall('HMGET', KEYS[1], 'node', 'inc', 'tok', 'urn', 'cls', 'meta', 'rev')
if cur.err then  -- not a hash: not a claim either; replace it
  redis.call('DEL', KEYS[1])
  cur = {}
end
if cur[1] then
  local mine = cur[1] == ARGV[2]
  if not (mine and (cur[4] == ARGV[4] or cur[3] == ARGV[8])) then
    if lease(ARGV[1] .. ':node:' .. cur[1]) == cur[2] then
      return {'held', cur[1], cur[2] or '', cur[3] or '', cur[4] or '', cur[5] or '',
              cur[6] or '', cur[7] or ''}
    end
  end
end
local seq = redis.call('INCR', KEYS[4])
feed(KEYS[3], ARGV[9], seq, cjson.encode({
  op = 'set', k = ARGV[7], node = ARGV[2], inc = ARGV[3], tok = seq, urn = ARGV[4],
  cls = ARGV[5], meta = ARGV[6]}))
if cur[1] and cur[1] ~= ARGV[2] then redis.call('SREM', ARGV[1] .. ':held:' .. cur[1], KEYS[1]) end
redis.call('HSET', KEYS[1], 'k', ARGV[7], 'node', ARGV[2], 'inc', ARGV[3], 'tok', seq,
  'rev', seq, 'urn', ARGV[4], 'cls', ARGV[5], 'meta', ARGV[6])
redis.call('SADD', KEYS[2], KEYS[1])
redis.call('SADD', KEYS[6], KEYS[1])
return {'ok', seq}
"""

# A batch of claims, all or nothing (register_many).
# KEYS: P:names, P:events, P:seq, own lease, own held set, then the N name hashes.
# ARGV: prefix, node id, incarnation, feed maxlen, N, then 5 per name: urn,
#       actor class, metadata JSON, name JSON, replace token ('' = none).
# Returns {'ok', token 1, ..., token N} | {'nolease'} |
#         {'held', i, node, inc, tok, urn, cls, meta, rev} (name i has a live
#         holder; nothing was written).
CLAIM_MANY = FEED + """
if lease(KEYS[4]) ~= ARGV[3] then return {'nolease'} end
local n = tonumber(ARGV[5])
local holders = {}
for i = 1, n do
  local a = 5 + (i - 1) * 5
  local key = KEYS[5 + i]
  local cur = redis.pcall('HMGET', key, 'node', 'inc', 'tok', 'urn', 'cls', 'meta', 'rev')
  if cur.err then
    cur = {}
  end
  if cur[1] then
    local mine = cur[1] == ARGV[2]
    if not (mine and (cur[4] == ARGV[a + 1] or cur[3] == ARGV[a + 5])) then
      if lease(ARGV[1] .. ':node:' .. cur[1]) == cur[2] then
        return {'held', i, cur[1], cur[2] or '', cur[3] or '', cur[4] or '', cur[5] or '',
                cur[6] or '', cur[7] or ''}
      end
    end
  end
  holders[i] = cur[1]
end
local tokens = {'ok'}
for i = 1, n do
  local a = 5 + (i - 1) * 5
  local key = KEYS[5 + i]
  local seq = redis.call('INCR', KEYS[3])
  feed(KEYS[2], ARGV[4], seq, cjson.encode({
    op = 'set', k = ARGV[a + 4], node = ARGV[2], inc = ARGV[3], tok = seq, urn = ARGV[a + 1],
    cls = ARGV[a + 2], meta = ARGV[a + 3]}))
  if holders[i] == nil and redis.call('TYPE', key)['ok'] ~= 'hash' then
    redis.call('DEL', key)  -- not a claim: replaced
  end
  if holders[i] and holders[i] ~= ARGV[2] then
    redis.call('SREM', ARGV[1] .. ':held:' .. holders[i], key)
  end
  redis.call('HSET', key, 'k', ARGV[a + 4], 'node', ARGV[2], 'inc', ARGV[3], 'tok', seq,
    'rev', seq, 'urn', ARGV[a + 1], 'cls', ARGV[a + 2], 'meta', ARGV[a + 3])
  redis.call('SADD', KEYS[1], key)
  redis.call('SADD', KEYS[5], key)
  tokens[#tokens + 1] = seq
end
return tokens
"""

# A batch of fenced deletes (unregister, unregister_many, clear_namespace,
# releases after deaths): each name goes only if it still carries the token
# and node given, and (a claim of the caller's node id) if it is of the
# caller's incarnation or of none that lives: a process paused past its lease
# whose node id another process took meanwhile cannot delete that process's
# claims, even with a token it learnt from the feed.
# KEYS: P:names, P:events, P:seq, then the N name hashes.
# ARGV: prefix, feed maxlen, N, caller's node id, caller's incarnation, then 5
#       per name: name JSON, token, node, why, error text.
# Returns one value per name: the seq of its 'del' event, or 0 (gone, moved,
# or of another live incarnation of the caller's node id).
RELEASE = FEED + """
local n = tonumber(ARGV[3])
local out = {}
for i = 1, n do
  local a = 5 + (i - 1) * 5
  local key = KEYS[3 + i]
  local cur = redis.pcall('HMGET', key, 'node', 'tok', 'urn', 'inc')
  if cur.err or not cur[1] or cur[2] ~= ARGV[a + 2] or cur[1] ~= ARGV[a + 3] or
      (cur[1] == ARGV[4] and cur[4] ~= ARGV[5] and
       lease(ARGV[1] .. ':node:' .. cur[1]) == cur[4]) then
    out[i] = 0
  else
    local seq = redis.call('INCR', KEYS[3])
    feed(KEYS[2], ARGV[2], seq, cjson.encode({
      op = 'del', k = ARGV[a + 1], node = cur[1], inc = cur[4] or '', tok = cur[2],
      urn = cur[3] or '', why = ARGV[a + 4], err = ARGV[a + 5]}))
    redis.call('DEL', key)
    redis.call('SREM', KEYS[1], key)
    redis.call('SREM', ARGV[1] .. ':held:' .. cur[1], key)
    out[i] = seq
  end
end
return out
"""

# KEYS: name hash, P:events, P:seq.
# ARGV: prefix, token, metadata JSON, feed maxlen, name JSON, node id, incarnation.
# Fenced by the writer's own claim: the name must carry this node's token, and
# the claim's incarnation must be this node's live lease.
# Returns {'ok', seq} | {'gone'} | {'lapsed'} |
#         {'moved', node, inc, tok, urn, cls, meta, rev}.
UPDATE = FEED + """
local cur = redis.pcall('HMGET', KEYS[1], 'node', 'inc', 'tok', 'urn', 'cls', 'meta', 'rev')
if cur.err or not cur[1] then return {'gone'} end
if cur[3] ~= ARGV[2] or cur[1] ~= ARGV[6] then
  return {'moved', cur[1], cur[2] or '', cur[3] or '', cur[4] or '', cur[5] or '',
          cur[6] or '', cur[7] or ''}
end
if cur[2] ~= ARGV[7] or lease(ARGV[1] .. ':node:' .. cur[1]) ~= ARGV[7] then
  return {'lapsed'}
end
local seq = redis.call('INCR', KEYS[3])
feed(KEYS[2], ARGV[4], seq, cjson.encode({
  op = 'upd', k = ARGV[5], node = cur[1], inc = cur[2], tok = cur[3], urn = cur[4] or '',
  cls = cur[5] or '', meta = ARGV[3]}))
redis.call('HSET', KEYS[1], 'meta', ARGV[3], 'rev', seq)
return {'ok', seq}
"""

# KEYS: own lease, own nodeinfo, P:epoch, P:nodes.
# ARGV: incarnation, ttl ms, nodeinfo JSON, a new epoch (used if none), '1' =
#       refuse if the lease exists (a start), node id, the previous
#       incarnation (a renewal: refused if the lease is another one, that is,
#       another process took the node id while this one was paused).
# Returns {'ok', epoch} | {'taken'}.
ACQUIRE = """
local held = redis.pcall('GET', KEYS[1])
if type(held) == 'table' and held.err then  -- not a lease: nobody's; replaced
  redis.call('DEL', KEYS[1])
  held = false
end
local ekind = redis.call('TYPE', KEYS[3])['ok']
if ekind ~= 'string' and ekind ~= 'none' then
  redis.call('DEL', KEYS[3])  -- not an epoch: as lost (every node re-reads)
end
local nkind = redis.call('TYPE', KEYS[4])['ok']
if nkind ~= 'set' and nkind ~= 'none' then redis.call('DEL', KEYS[4]) end
if held and (ARGV[5] == '1' or held ~= ARGV[7]) then return {'taken'} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
redis.call('SET', KEYS[3], ARGV[4], 'NX')
redis.call('SADD', KEYS[4], ARGV[6])
return {'ok', redis.call('GET', KEYS[3])}
"""

# KEYS: own lease, own nodeinfo.  ARGV: incarnation.
# Drops the lease and info only if they are of this incarnation (fenced: a
# process paused past its lease must not drop the lease of the process that
# took its node id since). Returns 1 if dropped (or none was left), else 0.
DROP_LEASE = LEASE + """
local held = lease(KEYS[1])
if held and held ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""

# KEYS: own lease, own nodeinfo, P:epoch, P:seq, P:names, P:events, own held
#       set, P:nodes.  ARGV: incarnation, ttl ms, a new epoch.
# A P:epoch that is not a string is replaced by the new epoch: every node then
# sees the epoch change and re-reads everything (as after a data loss: who
# wrote it may have written more).
# Returns {1 if refreshed else 0, epoch, seq, problems}: problems is '' or
# what is wrong with the shared keys that writes need (a key of another type,
# a counter that is not a number or cannot go higher), '; ' between them; seq
# is '' when P:seq is not a counter.
REFRESH = """
local ok = 0
if redis.pcall('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  ok = 1
end
local problems = {}
local function kind(key) return redis.call('TYPE', key)['ok'] end
local function expect(key, wanted)
  local k = kind(key)
  if k ~= wanted and k ~= 'none' then
    problems[#problems + 1] = key .. ' is a ' .. k .. ', not a ' .. wanted
  end
end
local epoch = redis.pcall('GET', KEYS[3])
if type(epoch) == 'table' then
  problems[#problems + 1] = KEYS[3] .. ' was a ' .. kind(KEYS[3]) ..
    ': replaced (every node re-reads everything)'
  redis.call('DEL', KEYS[3])
  redis.call('SET', KEYS[3], ARGV[3])
  epoch = ARGV[3]
elseif type(epoch) ~= 'string' then
  epoch = ''
end
local seq = redis.pcall('GET', KEYS[4])
if type(seq) == 'table' then
  problems[#problems + 1] = KEYS[4] .. ' is a ' .. kind(KEYS[4]) .. ', not a counter'
  seq = ''
elseif seq then
  if not string.match(seq, '^%d+$') or #seq > 19 then
    problems[#problems + 1] = KEYS[4] .. ' is not a counter (it holds ' ..
      string.format('%q', string.sub(seq, 1, 40)) .. ')'
    seq = ''
  elseif #seq == 19 and seq >= '9223372036854775807' then
    problems[#problems + 1] = KEYS[4] .. ' is at its highest value (2^63-1): ' ..
      'it cannot count any further'
  end
else
  seq = '0'
end
expect(KEYS[5], 'set')
expect(KEYS[6], 'stream')
expect(KEYS[7], 'set')
expect(KEYS[8], 'set')
return {ok, epoch, seq, table.concat(problems, '; ')}
"""

# KEYS: the node's lease, its held set, P:names, P:events, P:seq, P:nodes.
# ARGV: node id, feed maxlen, why, prefix.
# Deletes every name of the node whose claim is not of its live incarnation
# (one 'del' event each). A record that is not a hash is dropped from the sets.
# Returns how many names were deleted.
REAP = FEED + """
local live = lease(KEYS[1])
local n = 0
local held = redis.pcall('SMEMBERS', KEYS[2])
if type(held) ~= 'table' or held.err then  -- not a set: no index of names; dropped
  redis.call('DEL', KEYS[2])
  held = {}
end
for _, nk in ipairs(held) do
  local h = redis.pcall('HMGET', nk, 'node', 'inc', 'tok', 'k', 'urn')
  if type(h) ~= 'table' or h.err or h[1] ~= ARGV[1] then
    redis.call('SREM', KEYS[2], nk)
  elseif h[2] ~= live then
    local seq = redis.call('INCR', KEYS[5])
    feed(KEYS[4], ARGV[2], seq, cjson.encode({
      op = 'del', k = h[4] or '', node = h[1], inc = h[2] or '', tok = h[3] or '',
      urn = h[5] or '', why = ARGV[3], err = ''}))
    redis.call('DEL', nk)
    redis.call('SREM', KEYS[3], nk)
    redis.call('SREM', KEYS[2], nk)
    n = n + 1
  end
end
if not live then
  redis.call('SREM', KEYS[6], ARGV[1])
  redis.call('DEL', ARGV[4] .. ':nodeinfo:' .. ARGV[1])
end
return n
"""

# KEYS: P:names, P:seq, P:epoch, P:events.  ARGV: prefix.
# Returns {seq ('' if P:seq is not a counter), epoch ('' if none or not a
# string), rows (8 fields per name of a live claim), nodes whose
# claims are not live, the stream's last id}. Records that are not hashes or
# lack a holder are skipped here; the reader validates the rest.
SNAPSHOT = LEASE.replace("function lease(", "function lease_of(") + """
local rows = {}
local leases = {}
local dead = {}
local names = redis.pcall('SMEMBERS', KEYS[1])
if type(names) ~= 'table' or names.err then names = {} end  -- not a set: no index
for _, nk in ipairs(names) do
  local h = redis.pcall('HMGET', nk, 'k', 'node', 'inc', 'tok', 'rev', 'urn', 'cls', 'meta')
  if type(h) == 'table' and not h.err and h[1] and h[2] and h[3] and
      nk == ARGV[1] .. ':name:' .. h[1] then
    local lease = leases[h[2]]
    if lease == nil then
      lease = lease_of(ARGV[1] .. ':node:' .. h[2]) or ''
      leases[h[2]] = lease
    end
    if lease == h[3] then
      for i = 1, 8 do rows[#rows + 1] = h[i] or '' end
    else
      dead[h[2]] = true
    end
  end
end
local nodes = {}
for node, _ in pairs(dead) do nodes[#nodes + 1] = node end
local top = '0-0'
if redis.call('TYPE', KEYS[4])['ok'] == 'stream' then
  local last = redis.call('XREVRANGE', KEYS[4], '+', '-', 'COUNT', 1)
  if last[1] then top = last[1][1] end
end
local seq = redis.pcall('GET', KEYS[2])
if type(seq) ~= 'string' then seq = seq and '' or '0' end  -- '': not a counter
local epoch = redis.pcall('GET', KEYS[3])
if type(epoch) ~= 'string' then epoch = '' end
return {seq, epoch, rows, nodes, top}
"""

# KEYS: P:nodes, P:names, P:events, P:seq, P:epoch, own lease, own inbox, own
#       held set.  ARGV: prefix, node id.
# A node leaves (after its lease was dropped and its names reaped): its inbox,
# held set and place in P:nodes go, unless its node id has a live lease again
# (another process took it: those are that process's now). If no other node
# holds a live lease, every key of the prefix that outlives its nodes goes too
# (the prefix is left empty).
# Returns 1 if the prefix was cleared, else 0.
LEAVE = """
if redis.call('EXISTS', KEYS[6]) == 1 then return 0 end
redis.call('DEL', KEYS[7], KEYS[8])
redis.pcall('SREM', KEYS[1], ARGV[2])
local others = redis.pcall('SMEMBERS', KEYS[1])
if type(others) ~= 'table' or others.err then return 0 end  -- not a set: keep the prefix
for _, n in ipairs(others) do
  if redis.call('EXISTS', ARGV[1] .. ':node:' .. n) == 1 then return 0 end
end
for _, n in ipairs(others) do
  redis.call('DEL', ARGV[1] .. ':held:' .. n, ARGV[1] .. ':nodeinfo:' .. n,
             ARGV[1] .. ':inbox:' .. n)
end
local names = redis.pcall('SMEMBERS', KEYS[2])
if type(names) == 'table' and not names.err then
  for _, nk in ipairs(names) do redis.call('DEL', nk) end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return 1
"""

# Inboxes (P:inbox:<node>) are streams too: ids assigned by Redis, and an
# inbox whose ids are exhausted (someone appended the last possible id) or
# that is not a stream is replaced by the script that meets it (the messages
# it held are lost: delivery is at most once). Its node's receiver reads from
# the start again once it has deleted what it handled, so it finds the new
# stream even if its position was past it.
INBOX = """
local function inbox_add(inbox, maxlen, blob, ttl)
  local ok = redis.pcall('XADD', inbox, 'MAXLEN', '~', maxlen, '*', 'm', blob)
  if type(ok) == 'table' and ok.err then
    if string.find(ok.err, 'OOM', 1, true) then error(ok) end
    redis.call('DEL', inbox)
    redis.call('XADD', inbox, 'MAXLEN', '~', maxlen, '*', 'm', blob)
  end
  redis.call('PEXPIRE', inbox, ttl)
end
"""

# KEYS: target lease, target inbox.  ARGV: envelope, inbox maxlen, inbox ttl ms.
# Returns 1 if appended, 0 if the target node has no lease (nothing written).
SEND = INBOX + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
inbox_add(KEYS[2], ARGV[2], ARGV[1], ARGV[3])
return 1
"""

# A node's message to its own inbox (the receiver's wake-up).
# KEYS: own inbox.  ARGV: envelope, inbox maxlen, inbox ttl ms.  Returns 1.
POST = INBOX + """
inbox_add(KEYS[1], ARGV[2], ARGV[1], ARGV[3])
return 1
"""

# The receiver's repair after its XREAD was refused: of the streams it reads
# (KEYS: P:events, own inbox), each that exists and is not a stream goes (it
# cannot be the backend's: every writer of it replaces it anyway).
# Returns how many keys were deleted.
UNSTICK = """
local n = 0
for _, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'stream' and kind ~= 'none' then
    redis.call('DEL', key)
    n = n + 1
  end
end
return n
"""

# An ask's message, sent in the same round trip as the asker's wait on its
# reply list (a BLPOP pipelined after this script, on the same connection).
# KEYS: target lease, target inbox, the asker's reply list.
# ARGV: envelope, inbox maxlen, inbox ttl ms, reply list ttl ms.
# Returns 1 if appended; 0 if the target node has no lease: nothing is sent,
# and an empty marker is pushed to the reply list instead, so that the
# pipelined BLPOP returns at once (the asker reads the 0 first).
SEND_ASK = INBOX + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('LPUSH', KEYS[3], '')
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
  return 0
end
inbox_add(KEYS[2], ARGV[2], ARGV[1], ARGV[3])
return 1
"""

class Scripts:
    """Every script of the backend, registered once on ``client`` (which may
    be a pipeline's client). Immutable after construction; any thread."""

    __slots__ = ("acquire", "claim", "claim_many", "drop_lease", "leave", "post", "reap",
                 "refresh", "release", "send", "snapshot", "unstick", "update")

    def __init__(self, client: Any) -> None:
        self.claim = client.register_script(CLAIM)
        self.claim_many = client.register_script(CLAIM_MANY)
        self.release = client.register_script(RELEASE)
        self.update = client.register_script(UPDATE)
        self.acquire = client.register_script(ACQUIRE)
        self.refresh = client.register_script(REFRESH)
        self.reap = client.register_script(REAP)
        self.snapshot = client.register_script(SNAPSHOT)
        self.leave = client.register_script(LEAVE)
        self.drop_lease = client.register_script(DROP_LEASE)
        self.send = client.register_script(SEND)
        self.post = client.register_script(POST)
        self.unstick = client.register_script(UNSTICK)


# -- groups (pykka_registry.backends.redis._groups) ------------------------------------
#
# Memberships live per node in the hash P:gmem:<node> (field "<urn> <json [ns,
# group]>", value the member's JSON record: node, inc, k, urn, cls, meta, n =
# its place in join order, s = the counter value of its last write); P:gnodes
# is the set of nodes with such a hash. Every change increments P:gseq and is
# appended to the stream P:gevents as "s" (the counter) and "e" (the change as
# JSON), as the names' feed does. Entries without "s" (a closing node's wake-up
# of its own reader) are skipped by readers.

# Shared by the group scripts: the prefix's shared keys may hold anything
# (another program, a hand-made edit), and must not wedge every write.
# gnext: the next value of P:gseq; a P:gseq that is not a counter starts again
#        above every value handed out (the last event's "s", every record's
#        "n" and "s"), so that places and fences stay in order.
# gnodes_add / gnodes_rem: P:gnodes that is not a set is replaced (by the nodes
#        of P:nodes that have a P:gmem hash).
# gnodes_list: P:gnodes' members, or (not a set) every node that took a lease.
GHELPERS = LEASE + """
local function gnodes_list(gnodes, prefix)
  local nodes = redis.pcall('SMEMBERS', gnodes)
  if type(nodes) == 'table' and not nodes.err then return nodes end
  nodes = redis.pcall('SMEMBERS', prefix .. ':nodes')
  if type(nodes) == 'table' and not nodes.err then return nodes end
  return {}
end
local function gnodes_add(gnodes, node)
  local ok = redis.pcall('SADD', gnodes, node)
  if type(ok) == 'table' and ok.err then
    local prefix = string.sub(gnodes, 1, -8)
    redis.call('DEL', gnodes)
    local leased = redis.pcall('SMEMBERS', prefix .. ':nodes')
    if type(leased) == 'table' and not leased.err then
      for _, n in ipairs(leased) do
        if redis.call('EXISTS', prefix .. ':gmem:' .. n) == 1 then
          redis.call('SADD', gnodes, n)
        end
      end
    end
    redis.call('SADD', gnodes, node)
  end
end
local function gnodes_rem(gnodes, node)
  redis.pcall('SREM', gnodes, node)
end
local function gcount(value)  -- a counter value, or 0 (not one: NaN, < 0, past 2^53)
  local x = tonumber(value) or 0
  if x ~= x or x < 0 or x >= 9007199254740992 then return 0 end
  return math.floor(x)
end
local function gnext(gseq, gevents, gnodes)
  local seq = redis.pcall('INCR', gseq)
  if type(seq) ~= 'table' or not seq.err then return seq end
  if string.find(seq.err, 'OOM', 1, true) then error(seq) end
  local prefix = string.sub(gseq, 1, -6)
  local top = 0
  local last = redis.pcall('XREVRANGE', gevents, '+', '-', 'COUNT', 1)
  if type(last) == 'table' and not last.err and last[1] then
    local fields = last[1][2]
    for i = 1, #fields, 2 do
      if fields[i] == 's' then top = math.max(top, gcount(fields[i + 1])) end
    end
  end
  for _, node in ipairs(gnodes_list(gnodes, prefix)) do
    local rows = redis.pcall('HVALS', prefix .. ':gmem:' .. node)
    if type(rows) == 'table' and not rows.err then
      for _, raw in ipairs(rows) do
        local ok, rec = pcall(cjson.decode, raw)
        if ok and type(rec) == 'table' then
          top = math.max(top, gcount(rec.n), gcount(rec.s))
        end
      end
    end
  end
  redis.call('SET', gseq, string.format('%d', top))
  return redis.call('INCR', gseq)
end
"""

# KEYS: own lease, own P:gmem hash, P:gnodes, P:gseq, P:gevents.
# ARGV: node id, incarnation, field, group JSON, urn, actor class, metadata
#       JSON, feed maxlen.
# A rejoin (same field, same incarnation) keeps its place ("n").
# Returns {'ok', seq, n} | {'nolease'}.
GJOIN = FEED + GHELPERS + """
if lease(KEYS[1]) ~= ARGV[2] then return {'nolease'} end
local order = nil
local old = redis.pcall('HGET', KEYS[2], ARGV[3])
if type(old) == 'table' and old.err then
  redis.call('DEL', KEYS[2])  -- not a hash: not ours either; replaced
  old = false
end
if old then
  local ok, rec = pcall(cjson.decode, old)
  if ok and type(rec) == 'table' and rec.inc == ARGV[2] then order = tonumber(rec.n) end
end
local seq = gnext(KEYS[4], KEYS[5], KEYS[3])
if not order then order = seq end
redis.call('HSET', KEYS[2], ARGV[3], cjson.encode({
  node = ARGV[1], inc = ARGV[2], k = ARGV[4], urn = ARGV[5], cls = ARGV[6], meta = ARGV[7],
  n = order, s = seq}))
gnodes_add(KEYS[3], ARGV[1])
feed(KEYS[5], ARGV[8], seq, cjson.encode({
  op = 'join', node = ARGV[1], inc = ARGV[2], k = ARGV[4], urn = ARGV[5], cls = ARGV[6],
  meta = ARGV[7], n = order}))
return {'ok', seq, order}
"""

# A batch of fenced leaves (leave, deaths, stop_namespace).
# KEYS: P:gseq, P:gevents, then the N members' P:gmem hashes.
# ARGV: feed maxlen, N, caller's node id, caller's incarnation, then 6 per
#       member: node id, group JSON, urn, place ("n"; '' = any), why, error
#       text.
# A member goes only if its record still has that place (a later leave and
# rejoin is left alone), and (a member of the caller's node id) if it is not
# of another live incarnation of it (another process took the node id while
# the caller was away past its lease: fenced by the incarnation).
# Returns one value per member: the seq of its 'leave' event, or 0 (not there
# any more, or fenced).
GLEAVE = FEED + GHELPERS + """
local n = tonumber(ARGV[2])
local prefix = string.sub(KEYS[1], 1, -6)
local gnodes = prefix .. ':gnodes'
local out = {}
for i = 1, n do
  local a = 4 + (i - 1) * 6
  local field = ARGV[a + 3] .. ' ' .. ARGV[a + 2]
  local old = redis.pcall('HGET', KEYS[2 + i], field)
  local rec = nil
  if type(old) == 'string' then
    local ok, decoded = pcall(cjson.decode, old)
    if ok and type(decoded) == 'table' then rec = decoded end
  end
  if type(old) ~= 'string' or (ARGV[a + 4] ~= '' and
      (rec == nil or tostring(rec.n) ~= ARGV[a + 4])) or
      (ARGV[a + 1] == ARGV[3] and rec ~= nil and rec.inc ~= ARGV[4] and
       lease(prefix .. ':node:' .. ARGV[a + 1]) == rec.inc) then
    out[i] = 0
  else
    redis.call('HDEL', KEYS[2 + i], field)
    local seq = gnext(KEYS[1], KEYS[2], gnodes)
    local inc = '?'
    local order = 0
    if rec ~= nil then
      if type(rec.inc) == 'string' and rec.inc ~= '' then inc = rec.inc end
      order = tonumber(rec.n) or 0
    end
    feed(KEYS[2], ARGV[1], seq, cjson.encode({
      op = 'leave', node = ARGV[a + 1], inc = inc, k = ARGV[a + 2], urn = ARGV[a + 3],
      n = order, why = ARGV[a + 5], err = ARGV[a + 6]}))
    out[i] = seq
  end
end
return out
"""

# KEYS: P:gnodes, P:gseq, P:gevents.  ARGV: prefix.
# Returns {seq, the stream's last id, then per node of P:gnodes: node id, its
# lease's incarnation ('' = none), {field, record, ...}}. The reader keeps the
# records of live incarnations and validates each.
GSNAPSHOT = GHELPERS + """
local seq = redis.pcall('GET', KEYS[2])
if type(seq) ~= 'string' then seq = '0' end
local out = {seq, '0-0'}
if redis.call('TYPE', KEYS[3])['ok'] == 'stream' then
  local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
  if last[1] then out[2] = last[1][1] end
end
for _, node in ipairs(gnodes_list(KEYS[1], ARGV[1])) do
  local rows = redis.pcall('HGETALL', ARGV[1] .. ':gmem:' .. node)
  if type(rows) ~= 'table' or rows.err then rows = {} end
  out[#out + 1] = node
  out[#out + 1] = lease(ARGV[1] .. ':node:' .. node) or ''
  out[#out + 1] = rows
end
return out
"""

# KEYS: the node's lease, its P:gmem hash, P:gnodes, P:gseq, P:gevents.
# ARGV: node id, feed maxlen, why.
# Deletes every membership of the node that is not of its live incarnation
# (one 'drop' event per incarnation removed); an empty hash goes, with the
# node's place in P:gnodes. Returns how many memberships were deleted.
GREAP = FEED + GHELPERS + """
local live = lease(KEYS[1]) or ''
local rows = redis.pcall('HGETALL', KEYS[2])
if type(rows) ~= 'table' or rows.err then
  redis.call('DEL', KEYS[2])
  rows = {}
end
local gone = {}
local n = 0
for i = 1, #rows, 2 do
  local ok, rec = pcall(cjson.decode, rows[i + 1])
  local inc = nil
  if ok and type(rec) == 'table' and type(rec.inc) == 'string' then inc = rec.inc end
  if inc ~= live then
    redis.call('HDEL', KEYS[2], rows[i])
    if inc and inc ~= '' then gone[inc] = true end
    n = n + 1
  end
end
for inc, _ in pairs(gone) do
  local seq = gnext(KEYS[4], KEYS[5], KEYS[3])
  feed(KEYS[5], ARGV[2], seq, cjson.encode({op = 'drop', node = ARGV[1], inc = inc,
                                            why = ARGV[3]}))
end
if redis.call('EXISTS', KEYS[2]) == 0 then gnodes_rem(KEYS[3], ARGV[1]) end
return n
"""

# KEYS: P:nodes, P:gnodes, P:gseq, P:gevents.  ARGV: prefix.
# Run by a stopping node after LEAVE: if no node of the prefix holds a live
# lease, every group key of the prefix goes (the prefix is left empty).
# Returns 1 if cleared, else 0.
GCLEAR = GHELPERS + """
local leased = redis.pcall('SMEMBERS', KEYS[1])
if type(leased) ~= 'table' or leased.err then leased = {} end
for _, n in ipairs(leased) do
  if redis.call('EXISTS', ARGV[1] .. ':node:' .. n) == 1 then return 0 end
end
local nodes = gnodes_list(KEYS[2], ARGV[1])
for _, n in ipairs(nodes) do
  if redis.call('EXISTS', ARGV[1] .. ':node:' .. n) == 1 then return 0 end
end
for _, n in ipairs(nodes) do redis.call('DEL', ARGV[1] .. ':gmem:' .. n) end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return 1
"""
