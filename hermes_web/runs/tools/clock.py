"""The ``current_time`` tool: the server's clock, in UTC or an IANA time zone."""

import datetime
import re
import zoneinfo

from hermes_web.runs.tools import ToolError

# IANA names are "Area/Location" made of letters, digits and "_+-"; checked before the name
# reaches the time zone database, which looks names up as files.
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+){0,2}")


def zone(name):
    """The time zone named ``name`` (UTC when empty); ToolError for an unknown one."""
    if name in (None, "", "UTC", "utc", "Z"):
        return datetime.timezone.utc
    if not isinstance(name, str) or len(name) > 64 or not _ZONE_NAME.fullmatch(name):
        raise ToolError("timezone must be an IANA name such as Europe/Paris or America/New_York")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"unknown time zone {name!r}: use an IANA name such as Europe/Paris") from None


class CurrentTime:
    name = "current_time"
    description = "The current date and time, in UTC or in the given IANA time zone."
    parameters = {
        "type": "object",
        "properties": {"timezone": {"type": "string", "description": "an IANA time zone such as Europe/Paris; default UTC"}},
        "additionalProperties": False,
    }

    def run(self, args: dict, context) -> dict:
        tz = zone(args.get("timezone"))
        now = datetime.datetime.fromtimestamp(context.clock(), tz)
        return {
            "timezone": "UTC" if tz is datetime.timezone.utc else str(tz),
            "iso": now.isoformat(timespec="seconds"),
            "weekday": now.strftime("%A"),
            "unix": int(now.timestamp()),
        }
