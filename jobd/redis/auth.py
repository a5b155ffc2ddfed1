"""Telling credential and ACL refusals apart from outages, and saying what to do about them."""

from __future__ import annotations

from redis.exceptions import (
    AuthenticationError,
    MaxConnectionsError,
    NoPermissionError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

AUTH_REPLIES = ("NOAUTH", "WRONGPASS", "NOPERM")


def is_auth_error(error: BaseException) -> bool:
    """Wrong password, missing password, or an ACL denial (redis-py strips the NOPERM of the
    last into NoPermissionError; inside a script the reply keeps it, after "ERR ...")."""
    if isinstance(error, AuthenticationError | NoPermissionError):
        return True
    text = str(error)
    return isinstance(error, ResponseError) and (text.startswith(AUTH_REPLIES) or "NOPERM" in text)


def is_pool_exhausted(error: BaseException) -> bool:
    """Every connection the pool may open is in use: MaxConnectionsError from redis-py 8, a plain
    ConnectionError with the same text from the asyncio pools of redis-py 6 and 7."""
    return isinstance(error, MaxConnectionsError) or (
        isinstance(error, RedisConnectionError) and str(error) == "Too many connections"
    )


def auth_message(url_text: str, error: BaseException) -> str:
    """Say what to do about a credential error, not only what Redis replied."""
    text = str(error)
    if "NOAUTH" in text or "HELLO must be called with the client already authenticated" in text:
        hint = "Redis requires a password and none was given: put it in redis.url"
    elif isinstance(error, NoPermissionError) and "channels" in text:
        hint = (
            "the Redis ACL user may not use jobd's pub/sub channels: give it the channel pattern "
            "&<key_prefix>:* or allchannels (Redis 7 gives new users no channels)"
        )
    elif isinstance(error, NoPermissionError) or "NOPERM" in text:
        hint = "the Redis ACL user lacks a permission jobd needs"
    else:
        hint = "wrong user name or password in redis.url"
    return f"Redis at {url_text} refused the credentials ({hint}): {text}"
