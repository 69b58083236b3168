// The official Anthropic SDK against gate in front of an OpenAI-dialect upstream (gate translates
// /v1/messages into chat completions): node translate-anthropic.mjs CASE. Environment as in lib.mjs; MODEL
// is a base name that cases extend with mock directives per request.
import Anthropic, { APIConnectionError, APIError, AnthropicError, AuthenticationError, BadRequestError,
                    InternalServerError, NotFoundError, OverloadedError, PermissionDeniedError, RateLimitError }
        from '@anthropic-ai/sdk';
import { betaTool } from '@anthropic-ai/sdk/helpers/beta/json-schema';

import { env, expectError, need, run } from './lib.mjs';
import { anthropicTools as tools, exchanges, headersOf, teeFetch, withDirectives } from './lib-translate.mjs';

const classes = { AnthropicError, APIError, APIConnectionError, AuthenticationError, BadRequestError,
                  InternalServerError, NotFoundError, OverloadedError, PermissionDeniedError, RateLimitError };
const sent = [];

function client() {
        return new Anthropic({
                apiKey: need('API_KEY'),
                authToken: null,
                baseURL: need('GATE_URL'),
                maxRetries: 0,
                timeout: 20000,
                fetch: teeFetch(sent),
        });
}

const model = (...d) => withDirectives(need('MODEL'), ...d, env('DIRECTIVES'));
const messages = [{ role: 'user', content: 'Say something.' }];
// A 1x1 PNG.
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';

// A stream event as a short string: "content_block_delta:1:input_json_delta".
function eventName(ev) {
        if (ev.type === 'content_block_start')
                return `${ev.type}:${ev.index}:${ev.content_block.type}`;
        if (ev.type === 'content_block_delta')
                return `${ev.type}:${ev.index}:${ev.delta.type}`;
        if (ev.type === 'content_block_stop')
                return `${ev.type}:${ev.index}`;
        return ev.type;
}

// Runs a MessageStream to its end; what the SDK's listeners saw along the way.
async function drive(stream) {
        const events = [], texts = [], json = [];
        let messageStart = null;
        stream.on('streamEvent', ev => {
                events.push(eventName(ev));
                if (ev.type === 'message_start')
                        messageStart = ev.message;
        });
        stream.on('text', delta => texts.push(delta));
        stream.on('inputJson', (partial, snapshot) => json.push({ partial, snapshot }));
        const final = await stream.finalMessage();
        return { final, events, texts, json, messageStart };
}

await run({
        async messages() {
                const { data, response } = await client().messages
                        .create({ model: model(), max_tokens: 100, system: 'Be brief.', messages })
                        .withResponse();
                return { message: data, headers: headersOf(response), exchanges: await exchanges(sent) };
        },

        async tools() {
                const { data, response } = await client().messages
                        .create({ model: model('tools=2'), max_tokens: 100, messages, tools }).withResponse();
                return { message: data, headers: headersOf(response), exchanges: await exchanges(sent) };
        },

        async stream() {
                const stream = client().messages.stream({ model: model('chunks=5', 'pace_ms=2'), max_tokens: 100,
                                                          system: 'Be brief.', messages });
                const r = await drive(stream);
                return { ...r, finalText: await stream.finalText(), exchanges: await exchanges(sent) };
        },

        async tool_stream() {
                const stream = client().messages.stream({ model: model('tools=2', 'preamble=1', 'chunks=2', 'pace_ms=2'),
                                                          max_tokens: 100, messages, tools });
                return { ...(await drive(stream)), exchanges: await exchanges(sent) };
        },

        // Three requests, each with the whole conversation so far: tool_use (two parallel calls) -> the
        // client's tool_result blocks -> text; then a follow-up question over that history.
        async tool_loop() {
                const c = client();
                const history = [{ role: 'user', content: 'What is the weather and the time in Paris?' }];
                const system = [{ type: 'text', text: 'You are terse.' }, { type: 'text', text: 'Use the tools.' }];

                const first = await c.messages.create({ model: model('tools=2'), max_tokens: 200, system, messages: history,
                                                        tools });
                const calls = first.content.filter(b => b.type === 'tool_use');
                history.push({ role: 'assistant', content: first.content });
                history.push({ role: 'user', content: [
                        { type: 'tool_result', tool_use_id: calls[0].id, content: `Sunny in ${calls[0].input.location}` },
                        { type: 'tool_result', tool_use_id: calls[1].id, is_error: true,
                          content: [{ type: 'text', text: 'clock unavailable' }] },
                        { type: 'text', text: 'Answer now.' },
                ] });

                const stream = c.messages.stream({ model: model('chunks=4', 'pace_ms=1'), max_tokens: 200, system,
                                                   messages: history, tools });
                const second = await drive(stream);
                history.push({ role: 'assistant', content: second.final.content });
                history.push({ role: 'user', content: 'Thanks. And tomorrow?' });

                const third = await c.messages.create({ model: model('chunks=3'), max_tokens: 200, system,
                                                        messages: history, tools });
                return { first, second: second.final, secondEvents: second.events, third,
                         exchanges: await exchanges(sent) };
        },

        // The SDK's own tool loop (beta toolRunner): it runs the tools and sends their results back, for
        // two requests (max_iterations; the mock keeps calling tools). THREAD=1 leaves the runner's default
        // server-held conversation (beta "thread") on; else thread: false sends the whole history each time.
        async tool_runner() {
                const ran = [];
                const runnable = tools.map(t => betaTool({
                        name: t.name, description: t.description, inputSchema: t.input_schema,
                        run: input => {
                                ran.push({ name: t.name, input });
                                return t.name === 'get_weather' ? `Sunny in ${input.location}` : '13:00';
                        } }));
                const params = { model: model('tools=2'), max_tokens: 100, max_iterations: 2,
                                 messages: [{ role: 'user', content: 'Weather and time in Paris?' }], tools: runnable };
                if (!env('THREAD'))
                        params.thread = false;
                const turns = [];
                const error = await expectError(async () => {
                        for await (const message of client().beta.messages.toolRunner(params))
                                turns.push(message);
                }, classes);
                return { turns, ran, error, exchanges: await exchanges(sent) };
        },

        // Fields with an OpenAI equivalent, and fields without one (dropped, named in a header).
        async fields() {
                const { data, response } = await client().messages.create({
                        model: model('tools=1'), max_tokens: 64, messages: [{ role: 'user', content: [
                                { type: 'text', text: 'Cached part.', cache_control: { type: 'ephemeral' } },
                                { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } },
                                { type: 'image', source: { type: 'url', url: 'https://example.com/cat.png' } },
                                { type: 'text', text: 'Question.' } ] }],
                        system: 'Be brief.', temperature: 0.3, top_p: 0.9, top_k: 40, stop_sequences: ['END', 'STOP'],
                        metadata: { user_id: 'user-42' }, tools,
                        tool_choice: { type: 'any', disable_parallel_tool_use: true },
                }).withResponse();
                return { message: data, headers: headersOf(response), exchanges: await exchanges(sent) };
        },

        // Requests that cannot be expressed for an OpenAI upstream: a 400 in Anthropic's dialect.
        async refused() {
                const documentUrl = await expectError(() => client().messages.create({
                        model: model(), max_tokens: 64, messages: [{ role: 'user', content: [
                                { type: 'document', source: { type: 'url', url: 'https://example.com/a.pdf' } },
                                { type: 'text', text: 'Summarise.' } ] }] }), classes);
                const prefill = await expectError(() => client().messages.create({
                        model: model(), max_tokens: 64, messages: [
                                { role: 'user', content: 'Count to three.' },
                                { role: 'assistant', content: 'One,' }] }), classes);
                return { documentUrl, prefill };
        },

        async error() {
                return await expectError(() => client().messages.create({ model: model(), max_tokens: 100,
                                                                          messages }), classes);
        },

        // The stream fails: before it starts (an error status) or in the middle (the SDK must not end
        // with a clean finalMessage). What the listeners saw before is kept.
        async stream_error() {
                const stream = client().messages.stream({ model: model(), max_tokens: 100, messages,
                                                          tools: env('TOOLS') ? tools : undefined });
                const events = [], texts = [];
                stream.on('streamEvent', ev => events.push(eventName(ev)));
                stream.on('text', d => texts.push(d));
                stream.on('error', () => {});
                const error = await expectError(() => stream.finalMessage(), classes);
                return { error, events, texts, exchanges: await exchanges(sent) };
        },

        // One upstream error status after another (STATUSES=400,401,...): the SDK's typed error for each.
        async errors() {
                const out = {};
                for (const s of need('STATUSES').split(','))
                        out[s] = await expectError(() => client().messages.create({ model: model(`error=${s}`),
                                                                                    max_tokens: 10, messages }),
                                                   classes);
                return out;
        },

        // A long stream of large deltas (MODEL carries chunks= and chunk_bytes=): events split across reads.
        async big_stream() {
                const stream = client().messages.stream({ model: model(), max_tokens: 100000, messages });
                const sizes = [];
                stream.on('text', d => sizes.push(d.length));
                const final = await stream.finalMessage();
                return { sizes, length: final.content[0].text.length, stop_reason: final.stop_reason,
                         usage: final.usage, blocks: final.content.length };
        },

        // The client gives up after ABORT_AFTER text deltas: the SDK ends quietly, gate cancels upstream.
        async abort() {
                const stream = client().messages.stream({ model: model(), max_tokens: 1000, messages });
                const texts = [];
                const t0 = Date.now();
                let threw = null;
                stream.on('text', d => {
                        texts.push(d);
                        if (texts.length === Number(env('ABORT_AFTER', '3')))
                                stream.abort();
                });
                try {
                        await stream.done();
                } catch (e) {
                        threw = { name: e?.constructor?.name, message: String(e?.message ?? e) };
                }
                return { texts, threw, ms: Date.now() - t0, aborted: stream.aborted };
        },

        async count_tokens() {
                const { data, response } = await client().messages.countTokens({ model: model(), messages,
                                                                                  system: 'Be brief.' }).withResponse();
                return { count: data, headers: headersOf(response) };
        },
}, classes);
