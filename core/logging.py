from __future__ import annotations

import logging

from core.request_context import request_id_var


class RequestIdFilter(logging.Filter):
    """Stamps every log record with the id of the request (or task) being served."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True
