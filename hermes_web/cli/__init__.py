"""The ``hermes-web`` command: ``serve`` (the only code that imports gevent), ``compact``,
``set-password`` and ``token``. Thin wrappers over the packages below; nothing imports it.
"""
