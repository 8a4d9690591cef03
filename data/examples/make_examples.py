"""Writes the example inputs of the README's "use it on your gateway's logs" sections, each made
by the real library of that gateway against switchyard's mock upstream (never written by hand):

* litellm.ndjson: LiteLLM's StandardLoggingPayload, one JSON line per call, as a custom logging
  callback receives it, from `litellm.completion(..., mock_response=...)` (no network);
* openrouter-generations.ndjson: OpenRouter generation stats (`GET /api/v1/generation?id=...`,
  its `data` object), one per line, with the task the app knows beside them; taken from the
  recorded answers under tests/fixtures/openrouter;
* otel-openai.json: OTLP/JSON trace export of the spans the official OpenAI instrumentation
  (opentelemetry-instrumentation-openai-v2) records around `openai` client calls, made against
  `switchyard mock-upstream` (start it first: switchyard mock-upstream --listen 127.0.0.1:7072).

Usage: python make_examples.py litellm|openrouter|otel [MOCK_URL]
`litellm` needs the `litellm` package; `otel` needs openai, opentelemetry-sdk,
opentelemetry-exporter-otlp-proto-common and opentelemetry-instrumentation-openai-v2.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# (task, model, prompt, answer): a small support app on two models.
CALLS = [
    ("support-triage", "gpt-4o", "My invoice is wrong, who do I talk to?", "Billing can fix that: I have opened a ticket."),
    ("support-triage", "gpt-4o-mini", "Reset my password please", "A reset link is on its way to your inbox."),
    ("summarize", "gpt-4o-mini", "Summarise: the meeting moved the launch to May and cut the budget by 10%.", "Launch moves to May; budget down 10%."),
    ("summarize", "gpt-4o", "Summarise: churn fell 2 points after the onboarding change.", "Onboarding change cut churn by 2 points."),
    ("extract", "gpt-4o", "Extract the date: the contract renews on 2026-03-01.", "2026-03-01"),
]


def litellm_example():
    import asyncio

    # The shipped price map, not a download.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm
    from litellm.integrations.custom_logger import CustomLogger

    payloads = []

    class Keep(CustomLogger):
        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            payloads.append(kwargs.get("standard_logging_object"))

    litellm.callbacks = [Keep()]

    async def calls():
        for task, model, prompt, answer in CALLS:
            await litellm.acompletion(
                model=model,
                messages=[{"role": "user", "content": prompt}],
                mock_response=answer,
                metadata={"tags": ["task:" + task], "spend_logs_metadata": {"task": task}, "user_api_key_alias": "support-app"},
            )
        # The success callbacks run after each call returns: wait for all of them.
        for _ in range(200):
            if len(payloads) == len(CALLS):
                break
            await asyncio.sleep(0.05)

    asyncio.run(calls())
    path = os.path.join(HERE, "litellm.ndjson")
    with open(path, "w") as f:
        for p in payloads:
            f.write(json.dumps(p, default=str, sort_keys=True) + "\n")
    print(f"wrote {len(payloads)} LiteLLM payloads to {path}")


def otel_example(mock):
    from google.protobuf.json_format import MessageToDict
    from openai import OpenAI
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-app"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    client = OpenAI(base_url=mock.rstrip("/") + "/v1", api_key="sk-example")
    tracer = provider.get_tracer("support-app")
    for task, model, prompt, _ in CALLS:
        # The app's own span carries the task; switchyard reads it from the model call's parent.
        with tracer.start_as_current_span(task) as s:
            s.set_attribute("switchyard.task", task)
            client.chat.completions.create(model="openai/" + model, messages=[{"role": "user", "content": prompt}])
    export = MessageToDict(encode_spans(memory.get_finished_spans()))
    path = os.path.join(HERE, "otel-openai.json")
    with open(path, "w") as f:
        json.dump(export, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {len(memory.get_finished_spans())} spans to {path}")


def openrouter_example():
    import glob

    fixtures = os.path.join(HERE, "..", "..", "tests", "fixtures", "openrouter", "generation_*.json")
    path = os.path.join(HERE, "openrouter-generations.ndjson")
    files = sorted(glob.glob(fixtures))
    with open(path, "w") as f:
        for i, name in enumerate(files):
            with open(name) as g:
                gen = json.load(g)
            gen["task"] = CALLS[i % len(CALLS)][0]
            f.write(json.dumps(gen, sort_keys=True) + "\n")
    print(f"wrote {len(files)} OpenRouter generations to {path}")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "litellm":
        litellm_example()
    elif what == "openrouter":
        openrouter_example()
    elif what == "otel":
        otel_example(sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:7072")
    else:
        sys.exit(__doc__)
