"""JSON responses through the journal's encoder (orjson, standard-library fallback).

Session views carry whole transcripts; encoding them with the journal's encoder keeps a
view of a long run cheap and gives every response the same compact UTF-8 form.
"""

from flask.json.provider import DefaultJSONProvider

from hermes_web.core.codec import encode_line


class JournalJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, encoding with :func:`hermes_web.core.codec.encode_line`."""

    def dumps(self, obj, **kwargs) -> str:
        return encode_line(obj)[:-1].decode("utf-8")

    def response(self, *args, **kwargs):
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(encode_line(obj)[:-1], mimetype=self.mimetype)
