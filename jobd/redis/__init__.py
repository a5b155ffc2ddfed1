"""Everything jobd knows about Redis itself, shared by the client, the worker and the command line.

connect.py     URLs (standalone, TLS, unix, Sentinel, Cluster) into redis-py clients
tls.py         TLS mistakes told apart from outages
auth.py        credential and ACL refusals told apart from outages
keys.py        the key schema: every key of one queue shares the hash tag {<queue>}
scripts.py     the Lua scripts of lua/: loaded once, run with EVALSHA
embedded.py    the private server behind redis.url = "embedded"
"""
