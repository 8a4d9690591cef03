"""Sends a mixed trace export (GenAI model calls and plain spans) to switchyard through the real
OpenTelemetry SDK exporter (opentelemetry-exporter-otlp-proto-http), then the same spans again
as a raw OTLP/HTTP protobuf request to read the server's partial_success.

Usage: otlp_export.py ENDPOINT (e.g. http://127.0.0.1:7070/v1/traces). Prints one JSON line.
"""

import json
import sys

import requests
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind


def main() -> None:
    endpoint = sys.argv[1]
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "otlp-test"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("switchyard-test")

    with tracer.start_as_current_span("GET /answer", kind=SpanKind.SERVER):
        for n, model in enumerate(["gpt-4o-mini", "gpt-4o"]):
            with tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT) as s:
                s.set_attribute("gen_ai.operation.name", "chat")
                s.set_attribute("gen_ai.request.model", model)
                s.set_attribute("gen_ai.response.id", f"py-otel-{n}")
                s.set_attribute("gen_ai.usage.input_tokens", 100 + n)
                s.set_attribute("gen_ai.usage.output_tokens", 20)
                s.set_attribute("switchyard.task", "otel-python")
    with tracer.start_as_current_span("SELECT users"):
        pass
    spans = memory.get_finished_spans()

    result = OTLPSpanExporter(endpoint=endpoint, timeout=30).export(spans)

    raw = requests.post(
        endpoint,
        data=encode_spans(spans).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
        timeout=30,
    )
    resp = ExportTraceServiceResponse.FromString(raw.content)
    print(
        json.dumps(
            {
                "exporter_result": result.name,
                "spans": len(spans),
                "raw_status": raw.status_code,
                "rejected_spans": resp.partial_success.rejected_spans,
                "error_message": resp.partial_success.error_message,
            }
        )
    )


if __name__ == "__main__":
    main()
