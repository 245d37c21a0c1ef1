// The official OpenAI Node SDK against the data plane, unchanged but for the
// base URL and key. Prints one JSON object of what it saw; exits non-zero on
// an unexpected failure. Env: SLUICE_BASE_URL (".../v1"), SLUICE_KEY,
// SLUICE_MODEL.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.SLUICE_BASE_URL, apiKey: process.env.SLUICE_KEY, maxRetries: 0 });
const model = process.env.SLUICE_MODEL;
const out = {};
const messages = [{ role: "user", content: "hello from the sdk" }];

const { data: completion, response } = await client.chat.completions
  .create({ model, messages, max_tokens: 5 })
  .withResponse();
out.completion = {
  content: completion.choices[0].message.content,
  finish_reason: completion.choices[0].finish_reason,
  usage: completion.usage,
  provider: response.headers.get("x-sluice-provider"),
  attempts: response.headers.get("x-sluice-attempts"),
};

const stream = await client.chat.completions.create({
  model,
  messages,
  max_tokens: 6,
  stream: true,
  stream_options: { include_usage: true },
});
let text = "";
let chunks = 0;
let usage = null;
for await (const chunk of stream) {
  chunks++;
  if (chunk.choices.length > 0) text += chunk.choices[0].delta.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}
out.stream = { text, chunks, usage };

// the stream helper accumulates deltas into a final message
const runner = client.chat.completions.stream({ model, messages, max_tokens: 4 });
const final = await runner.finalChatCompletion();
out.helper = { content: final.choices[0].message.content };

const emb = await client.embeddings.create({ model: "text-embedding-3-small", input: ["one two", "three"] });
out.embeddings = { n: emb.data.length, dims: emb.data[0].embedding.length, usage: emb.usage };

const models = [];
for await (const m of client.models.list()) models.push(m.id);
out.models = models;

try {
  await client.chat.completions.create({ model: "", messages });
  out.error = null;
} catch (e) {
  out.error = { status: e.status, type: e.constructor.name, message: e.message };
}

try {
  const bad = new OpenAI({ baseURL: process.env.SLUICE_BASE_URL, apiKey: "sk-sluice-wrong", maxRetries: 0 });
  await bad.chat.completions.create({ model, messages });
  out.auth_error = null;
} catch (e) {
  out.auth_error = { status: e.status, type: e.constructor.name };
}

console.log(JSON.stringify(out));
