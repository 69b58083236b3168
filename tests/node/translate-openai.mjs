// The official OpenAI SDK against gate in front of an Anthropic-dialect upstream (chat completions and
// Responses translated into Messages) or an OpenAI-compatible one (Responses translated into chat
// completions): node translate-openai.mjs CASE. Environment as in lib.mjs; MODEL is a base name that cases
// extend with mock directives per request (DIRECTIVES adds more where a case says so).
import OpenAI, { APIConnectionError, APIError, AuthenticationError, BadRequestError, InternalServerError,
                 NotFoundError, OpenAIError, PermissionDeniedError, RateLimitError } from 'openai';

import { env, expectError, need, run } from './lib.mjs';
import { exchanges, headersOf, openaiTools as tools, responsesTools, teeFetch, withDirectives } from './lib-translate.mjs';

const classes = { OpenAIError, APIError, APIConnectionError, AuthenticationError, BadRequestError, InternalServerError,
                  NotFoundError, PermissionDeniedError, RateLimitError };
const sent = [];

function client() {
        return new OpenAI({
                apiKey: need('API_KEY'),
                baseURL: need('GATE_URL') + '/v1',
                organization: null,
                project: null,
                maxRetries: 0,
                timeout: 20000,
                fetch: teeFetch(sent),
        });
}

const model = (...d) => withDirectives(need('MODEL'), ...d, env('DIRECTIVES'));
const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Say something.' }];
// A 1x1 PNG.
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';

// Responses output text, the way create()'s output_text convenience builds it.
function outputText(response) {
        return response.output.filter(o => o.type === 'message').flatMap(o => o.content)
                .filter(c => c.type === 'output_text').map(c => c.text).join('');
}

await run({
        async chat() {
                const { data, response } = await client().chat.completions
                        .create({ model: model(), messages, max_tokens: 100 }).withResponse();
                return { completion: data, headers: headersOf(response), exchanges: await exchanges(sent) };
        },

        async chat_tools() {
                const { data, response } = await client().chat.completions
                        .create({ model: model('tools=2'), messages, tools }).withResponse();
                return { completion: data, headers: headersOf(response), exchanges: await exchanges(sent) };
        },

        // The stream helper: tool calls assembled from their deltas, usage from the include_usage chunk.
        async chat_stream_tools() {
                const stream = client().chat.completions.stream({
                        model: model('tools=2', 'preamble=1', 'chunks=2', 'pace_ms=2'), messages, tools,
                        stream_options: { include_usage: true } });
                const argDeltas = [], argDone = [], content = [], chunks = [];
                stream.on('tool_calls.function.arguments.delta', e => argDeltas.push(e));
                stream.on('tool_calls.function.arguments.done', e => argDone.push(e));
                stream.on('content', d => content.push(d));
                stream.on('chunk', c => chunks.push(c));
                const final = await stream.finalChatCompletion();
                return { final, argDeltas, argDone, content, chunks, exchanges: await exchanges(sent) };
        },

        // create({stream: true}) read with for await, without include_usage.
        async chat_stream_iter() {
                const stream = await client().chat.completions.create({ model: model('chunks=4'), messages,
                                                                        stream: true });
                const chunks = [];
                for await (const chunk of stream)
                        chunks.push(chunk);
                return { chunks, exchanges: await exchanges(sent) };
        },

        // Three requests with the whole conversation: tool_calls -> tool messages -> text; then a
        // follow-up over that history.
        async chat_tool_loop() {
                const c = client();
                const history = [{ role: 'system', content: 'You are terse.' },
                                 { role: 'user', content: 'What is the weather and the time in Paris?' }];
                const first = await c.chat.completions.create({ model: model('tools=2'), messages: history, tools });
                const msg = first.choices[0].message;
                history.push({ role: 'assistant', content: msg.content, tool_calls: msg.tool_calls });
                history.push({ role: 'tool', tool_call_id: msg.tool_calls[0].id, content: 'Sunny in Paris' });
                history.push({ role: 'tool', tool_call_id: msg.tool_calls[1].id,
                               content: [{ type: 'text', text: '13:00' }] });

                const stream = c.chat.completions.stream({ model: model('chunks=4', 'pace_ms=1'), messages: history,
                                                           tools });
                const second = await stream.finalChatCompletion();
                history.push({ role: 'assistant', content: second.choices[0].message.content });
                history.push({ role: 'user', content: 'Thanks. And tomorrow?' });

                const third = await c.chat.completions.create({ model: model('chunks=3'), messages: history, tools });
                return { first, second, third, exchanges: await exchanges(sent) };
        },

        // A field with no Anthropic equivalent is dropped and named in x-gate-translation-dropped.
        async chat_dropped() {
                const withImage = [messages[0], { role: 'user', content: [
                        { type: 'text', text: 'What is this?' },
                        { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } },
                        { type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }] }];
                const { data, response } = await client().chat.completions.create({
                        model: model(), messages: withImage, seed: 7, logit_bias: { '50256': -100 }, temperature: 0.2,
                        stop: ['END'], user: 'user-7', parallel_tool_calls: false, tools, tool_choice: 'required',
                        max_completion_tokens: 50 }).withResponse();
                return { completion: data, headers: headersOf(response), exchanges: await exchanges(sent) };
        },

        async chat_refused() {
                const n2 = await expectError(() => client().chat.completions.create({ model: model(), messages, n: 2 }),
                                             classes);
                const hot = await expectError(() => client().chat.completions.create({ model: model(), messages,
                                                                                      temperature: 1.5 }), classes);
                return { n2, hot };
        },

        async error() {
                return await expectError(() => client().chat.completions.create({ model: model(), messages }), classes);
        },

        // One upstream error status after another (STATUSES=400,401,...): the SDK's typed error for each.
        async errors() {
                const out = {};
                for (const s of need('STATUSES').split(','))
                        out[s] = await expectError(() => client().chat.completions.create({ model: model(`error=${s}`),
                                                                                            messages }), classes);
                return out;
        },

        // The stream fails mid-way (reset, or an upstream error event): the SDK must throw, not end quietly.
        async stream_error() {
                const chunks = [];
                const error = await expectError(async () => {
                        const s = await client().chat.completions.create({ model: model(), messages, stream: true,
                                                                          stream_options: { include_usage: true } });
                        for await (const c of s)
                                chunks.push(c);
                }, classes);
                return { error, chunks, exchanges: await exchanges(sent) };
        },

        async stream_helper_error() {
                const stream = client().chat.completions.stream({ model: model(), messages });
                const content = [];
                stream.on('content', d => content.push(d));
                stream.on('error', () => {});
                const error = await expectError(() => stream.finalChatCompletion(), classes);
                return { error, content, exchanges: await exchanges(sent) };
        },

        // A long stream of large deltas (MODEL carries chunks= and chunk_bytes=): chunks split across reads.
        async big_stream() {
                const stream = client().chat.completions.stream({ model: model(), messages,
                                                                  stream_options: { include_usage: true } });
                const sizes = [];
                stream.on('content', d => sizes.push(d.length));
                const final = await stream.finalChatCompletion();
                return { sizes, length: final.choices[0].message.content.length,
                         finish_reason: final.choices[0].finish_reason, usage: final.usage };
        },

        // The client gives up after ABORT_AFTER chunks: the loop ends quietly, gate cancels upstream.
        async abort() {
                const stream = await client().chat.completions.create({ model: model(), messages, stream: true });
                const t0 = Date.now();
                let n = 0, threw = null;
                try {
                        for await (const _ of stream)
                                if (++n === Number(env('ABORT_AFTER', '3')))
                                        stream.controller.abort();
                } catch (e) {
                        threw = { name: e?.constructor?.name, message: String(e?.message ?? e) };
                }
                return { chunks: n, threw, ms: Date.now() - t0 };
        },

        // ---- Responses ----

        async responses() {
                const { data, response } = await client().responses.create({
                        model: model(), input: 'Say something.', instructions: 'Be brief.', max_output_tokens: 100 })
                        .withResponse();
                return { output_text: data.output_text, response: data, headers: headersOf(response),
                         exchanges: await exchanges(sent) };
        },

        async responses_tools() {
                const r = await client().responses.create({ model: model('tools=2'), input: 'Weather and time?',
                                                            tools: responsesTools, store: false });
                return { response: r, exchanges: await exchanges(sent) };
        },

        // create({stream: true}) read event by event.
        async responses_stream() {
                const stream = await client().responses.create({ model: model('chunks=4', 'pace_ms=2'),
                                                                 input: 'Say something.', instructions: 'Be brief.',
                                                                 stream: true, store: false });
                const events = [];
                for await (const ev of stream)
                        events.push(ev);
                return { types: events.map(e => e.type), seq: events.map(e => e.sequence_number), events,
                         exchanges: await exchanges(sent) };
        },

        // The stream helper, with text before two function calls.
        async responses_stream_helper() {
                const stream = client().responses.stream({ model: model('tools=2', 'preamble=1', 'chunks=3', 'pace_ms=2'),
                                                           input: 'Weather and time?', tools: responsesTools,
                                                           store: false });
                const deltas = [], argDeltas = [], argDone = [], types = [];
                stream.on('event', ev => types.push(ev.type));
                stream.on('response.output_text.delta', ev => deltas.push(ev.delta));
                stream.on('response.function_call_arguments.delta', ev => argDeltas.push(ev));
                stream.on('response.function_call_arguments.done', ev => argDone.push(ev));
                const final = await stream.finalResponse();
                return { final, text: outputText(final), deltas, argDeltas, argDone, types,
                         exchanges: await exchanges(sent) };
        },

        // A stateless tool loop: the function calls and their outputs go back as input items.
        async responses_tool_loop() {
                const c = client();
                const input = [{ role: 'user', content: 'Weather and time in Paris?' }];
                const first = await c.responses.create({ model: model('tools=2'), input, tools: responsesTools,
                                                         instructions: 'Be terse.', store: false });
                const calls = first.output.filter(o => o.type === 'function_call');
                input.push(...calls.map(({ type, call_id, name, arguments: a }) => ({ type, call_id, name, arguments: a })));
                input.push({ type: 'function_call_output', call_id: calls[0].call_id, output: 'Sunny' });
                input.push({ type: 'function_call_output', call_id: calls[1].call_id, output: '13:00' });
                const second = await c.responses.create({ model: model('chunks=3'), input, tools: responsesTools,
                                                          instructions: 'Be terse.', store: false });
                return { first, second, output_text: second.output_text, exchanges: await exchanges(sent) };
        },

        async responses_refused() {
                const prev = await expectError(() => client().responses.create({
                        model: model(), input: 'Again.', previous_response_id: 'resp_123' }), classes);
                const stored = await expectError(() => client().responses.create({
                        model: model(), input: 'Again.', store: true }), classes);
                return { prev, stored };
        },

        async responses_stream_error() {
                const types = [];
                let failed = null;
                const error = await expectError(async () => {
                        const s = await client().responses.create({ model: model(), input: 'Say something.',
                                                                    stream: true, store: false });
                        for await (const ev of s) {
                                types.push(ev.type);
                                if (ev.type === 'response.failed')
                                        failed = ev.response;
                        }
                }, classes);
                return { error, types, failed, exchanges: await exchanges(sent) };
        },
}, classes);
