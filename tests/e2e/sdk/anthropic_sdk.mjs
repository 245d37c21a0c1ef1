// The official Anthropic Node SDK against the data plane's Anthropic-format
// ingress (POST /v1/messages). Prints one JSON object of what it saw.
// Env: SLUICE_BASE_URL (the bare origin, as Anthropic's SDK expects),
// SLUICE_KEY, SLUICE_MODELS (comma-separated).
import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({ baseURL: process.env.SLUICE_BASE_URL, apiKey: process.env.SLUICE_KEY, maxRetries: 0 });
const out = {};

for (const model of process.env.SLUICE_MODELS.split(",")) {
  const r = {};
  const { data: msg, response } = await client.messages
    .create({ model, max_tokens: 5, system: "be brief", messages: [{ role: "user", content: "hello from the sdk" }] })
    .withResponse();
  r.message = {
    type: msg.type,
    role: msg.role,
    text: msg.content.filter((b) => b.type === "text").map((b) => b.text).join(""),
    stop_reason: msg.stop_reason,
    usage: msg.usage,
    provider: response.headers.get("x-sluice-provider"),
  };

  const stream = client.messages.stream({
    model,
    max_tokens: 6,
    messages: [{ role: "user", content: "stream to me" }],
  });
  const events = [];
  let text = "";
  stream.on("text", (t) => {
    text += t;
  });
  for await (const ev of stream) events.push(ev.type);
  const final = await stream.finalMessage();
  r.stream = { text, events, stop_reason: final.stop_reason, usage: final.usage };

  const tools = [
    {
      name: "get_weather",
      description: "weather for a city",
      input_schema: { type: "object", properties: { location: { type: "string" } }, required: ["location"] },
    },
  ];
  const tool = await client.messages.create({
    model,
    max_tokens: 1024,
    tools,
    messages: [{ role: "user", content: "what is the weather in Paris?" }],
  });
  const use = tool.content.find((b) => b.type === "tool_use");
  r.tool = { stop_reason: tool.stop_reason, name: use?.name, input: use?.input };
  out[model] = r;
}

try {
  // max_tokens is required by the Messages API
  await client.messages.create({ model: "claude-sonnet-4-6", messages: [{ role: "user", content: "x" }] });
  out.error = null;
} catch (e) {
  out.error = { status: e.status, type: e.constructor.name, error_type: e.error?.error?.type };
}

console.log(JSON.stringify(out));
