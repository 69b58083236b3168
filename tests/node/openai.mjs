// The official OpenAI SDK against gate: node openai.mjs CASE (see lib.mjs for the environment).
import OpenAI, { APIError, APIUserAbortError, NotFoundError, RateLimitError } from 'openai';

import { env, expectError, need, recordingFetch, run } from './lib.mjs';

const classes = { APIError, APIUserAbortError, NotFoundError, RateLimitError };
const sent = [];

function client() {
        return new OpenAI({
                apiKey: need('API_KEY'),
                baseURL: need('GATE_URL') + '/v1',
                organization: null,
                project: null,
                maxRetries: 0,          // every failure shows, none is retried away
                timeout: 20000,
                fetch: recordingFetch(sent),
        });
}

const model = () => need('MODEL');
const messages = [{ role: 'user', content: 'Say something.' }];

const tools = [
        { type: 'function', function: { name: 'get_weather', description: 'The weather in a place.',
                                         parameters: { type: 'object', properties: { location: { type: 'string' },
                                                                                     n: { type: 'integer' } },
                                                       required: ['location'] } } },
        { type: 'function', function: { name: 'get_time', description: 'The time in a place.',
                                         parameters: { type: 'object', properties: { location: { type: 'string' },
                                                                                     n: { type: 'integer' } },
                                                       required: ['location'] } } },
];

function headersOf(response) {
        const h = {};
        response.headers.forEach((v, k) => { h[k] = v; });
        return h;
}

// A deterministic pseudo-random payload, base64: stands in for an image of about 200 KB.
function imageData(bytes) {
        const b = Buffer.alloc(bytes);
        let x = 0x9e3779b9;
        for (let i = 0; i < bytes; i++) {
                x ^= x << 13; x >>>= 0;
                x ^= x >>> 17;
                x ^= x << 5; x >>>= 0;
                b[i] = x & 0xff;
        }
        Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]).copy(b);
        return b.toString('base64');
}

// Reads a stream until `after` chunks, then aborts it with `abort`; reports what arrived and how long.
async function abortAfter(stream, after, abort) {
        const t0 = Date.now();
        let n = 0, text = '', threw = null;
        try {
                for await (const chunk of stream) {
                        n++;
                        text += chunk.choices[0]?.delta?.content ?? '';
                        if (n === after)
                                abort();
                }
        } catch (e) {
                threw = { name: e?.constructor?.name, message: String(e?.message ?? e),
                          isUserAbort: e instanceof APIUserAbortError };
        }
        return { chunks: n, text, threw, ms: Date.now() - t0 };
}

await run({
        async chat() {
                const { data, response } = await client().chat.completions
                        .create({ model: model(), messages, temperature: 0.5 }).withResponse();
                return { completion: data, headers: headersOf(response), sent: JSON.parse(sent[0].body),
                         sentHeaders: sent[0].headers };
        },

        async chat_stream_iter() {
                const stream = await client().chat.completions.create({
                        model: model(), messages, stream: true, stream_options: { include_usage: true } });
                const chunks = [];
                for await (const chunk of stream)
                        chunks.push(chunk);
                const choices = chunks.filter(c => c.choices.length > 0).map(c => c.choices[0]);
                return {
                        n: chunks.length,
                        text: choices.map(c => c.delta.content ?? '').join(''),
                        role: choices[0]?.delta.role ?? null,
                        finish_reason: choices.map(c => c.finish_reason).filter(Boolean),
                        usage: chunks[chunks.length - 1]?.usage ?? null,
                        ids: [...new Set(chunks.map(c => c.id))],
                };
        },

        async chat_stream_helper() {
                const stream = client().chat.completions.stream({
                        model: model(), messages, stream_options: { include_usage: true } });
                const deltas = [];
                let chunks = 0;
                stream.on('content', delta => deltas.push(delta));
                stream.on('chunk', () => chunks++);
                const final = await stream.finalChatCompletion();
                return { deltas, chunks, final, finalContent: await stream.finalContent() };
        },

        async tools() {
                return await client().chat.completions.create({ model: model(), messages, tools });
        },

        async tools_stream() {
                const stream = client().chat.completions.stream({ model: model(), messages, tools });
                const argDeltas = [], argDone = [];
                stream.on('tool_calls.function.arguments.delta', e => argDeltas.push(e));
                stream.on('tool_calls.function.arguments.done', e => argDone.push(e));
                const final = await stream.finalChatCompletion();
                return { final, argDeltas, argDone };
        },

        async embeddings() {
                // The SDK asks for base64 by default and decodes the vectors itself.
                const r = await client().embeddings.create({ model: model(), input: ['hello', 'world'] });
                return { response: r, sent: JSON.parse(sent[0].body) };
        },

        async models() {
                const ids = [], items = [];
                for await (const m of client().models.list()) {
                        ids.push(m.id);
                        items.push(m);
                }
                return { ids, items, requests: sent.length };
        },

        async responses() {
                const r = await client().responses.create({ model: model(), input: 'Say something.',
                                                            instructions: 'Be brief.' });
                return { output_text: r.output_text, response: r };
        },

        async responses_stream() {
                const stream = await client().responses.create({ model: model(), input: 'Say something.',
                                                                 stream: true });
                const types = [], deltas = [], seq = [];
                let completed = null;
                for await (const ev of stream) {
                        types.push(ev.type);
                        seq.push(ev.sequence_number);
                        if (ev.type === 'response.output_text.delta')
                                deltas.push(ev.delta);
                        if (ev.type === 'response.completed')
                                completed = ev.response;
                }
                return { types, deltas, seq, completed };
        },

        async responses_stream_helper() {
                const stream = client().responses.stream({ model: model(), input: 'Say something.' });
                const deltas = [];
                stream.on('response.output_text.delta', ev => deltas.push(ev.delta));
                const final = await stream.finalResponse();
                // finalResponse() has no output_text convenience (create() has): collect the text parts.
                const text = final.output.filter(o => o.type === 'message')
                        .flatMap(o => o.content).filter(c => c.type === 'output_text').map(c => c.text).join('');
                return { deltas, text, final };
        },

        async error() {
                return await expectError(() => client().chat.completions.create({ model: model(), messages }), classes);
        },

        async stream_error() {
                // The error answer comes before the stream starts: create() itself rejects.
                return await expectError(async () => {
                        const s = await client().chat.completions.create({ model: model(), messages, stream: true });
                        for await (const _ of s)
                                ;
                }, classes);
        },

        async abort_controller() {
                const stream = await client().chat.completions.create({ model: model(), messages, stream: true });
                return await abortAfter(stream, Number(env('ABORT_AFTER', '2')), () => stream.controller.abort());
        },

        async abort_signal() {
                const ac = new AbortController();
                const stream = await client().chat.completions.create({ model: model(), messages, stream: true },
                                                                      { signal: ac.signal });
                return await abortAfter(stream, Number(env('ABORT_AFTER', '2')), () => ac.abort());
        },

        async image() {
                const params = {
                        model: model(),
                        messages: [{ role: 'user', content: [
                                { type: 'text', text: 'What is in this image?' },
                                { type: 'image_url', image_url: { url: 'data:image/png;base64,' +
                                                                        imageData(Number(env('IMAGE_BYTES', '153600'))),
                                                                  detail: 'high' } },
                        ] }],
                        max_tokens: 50,
                };
                const r = await client().chat.completions.create(params);
                return { built: params, sent: sent[0].body, response: r };
        },
}, classes);
