"""Uploads: files stored under generated names inside ``uploads/<session_id>/``."""


class UnknownAttachment(LookupError):
    """An attachment id that this session does not have."""


class UploadStore:
    """Attachment storage of a data directory."""

    def __init__(self, data_dir, config):
        self.data_dir = data_dir
        self.config = config

    def resolve(self, session_id: str, attachment_ids) -> list:
        """Metadata of the given attachments, in order; UnknownAttachment for a missing one."""
        for attachment_id in attachment_ids:
            raise UnknownAttachment(attachment_id)
        return []
