"""LiteLLM's logging in the proxy benchmark: a custom callback appending each request's
standard logging payload, one JSON line per request, to the file named by BENCH_LITELLM_LOG."""

import json
import os

from litellm.integrations.custom_logger import CustomLogger


class FileLogger(CustomLogger):
    def __init__(self):
        super().__init__()
        self.out = open(os.environ["BENCH_LITELLM_LOG"], "a", buffering=1)

    def _write(self, kwargs):
        payload = kwargs.get("standard_logging_object") or {}
        self.out.write(json.dumps(payload, default=str) + "\n")

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._write(kwargs)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._write(kwargs)


proxy_handler_instance = FileLogger()
