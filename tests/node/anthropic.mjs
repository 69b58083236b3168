// The official Anthropic SDK against gate: node anthropic.mjs CASE (see lib.mjs for the environment).
import Anthropic, { APIError, NotFoundError, OverloadedError, RateLimitError } from '@anthropic-ai/sdk';

import { expectError, need, recordingFetch, run } from './lib.mjs';

const classes = { APIError, NotFoundError, OverloadedError, RateLimitError };
const sent = [];

function client() {
        return new Anthropic({
                apiKey: need('API_KEY'),
                authToken: null,        // never an Authorization header from the environment
                baseURL: need('GATE_URL'),
                maxRetries: 0,          // every failure shows, none is retried away
                timeout: 20000,
                fetch: recordingFetch(sent),
        });
}

const model = () => need('MODEL');
const messages = [{ role: 'user', content: 'Say something.' }];

const tools = [
        { name: 'get_weather', description: 'The weather in a place.',
          input_schema: { type: 'object', properties: { location: { type: 'string' }, n: { type: 'integer' } },
                          required: ['location'] } },
        { name: 'get_time', description: 'The time in a place.',
          input_schema: { type: 'object', properties: { location: { type: 'string' }, n: { type: 'integer' } },
                          required: ['location'] } },
];

function headersOf(response) {
        const h = {};
        response.headers.forEach((v, k) => { h[k] = v; });
        return h;
}

await run({
        async messages() {
                const { data, response } = await client().messages
                        .create({ model: model(), max_tokens: 100, messages }).withResponse();
                return { message: data, headers: headersOf(response), sentHeaders: sent[0].headers };
        },

        async stream() {
                const stream = client().messages.stream({ model: model(), max_tokens: 100, messages });
                const texts = [], events = [];
                stream.on('text', delta => texts.push(delta));
                stream.on('streamEvent', ev => events.push(ev.type));
                const final = await stream.finalMessage();
                return { texts, events, final, finalText: await stream.finalText(), sentHeaders: sent[0].headers };
        },

        async tool_stream() {
                const stream = client().messages.stream({ model: model(), max_tokens: 100, messages, tools });
                const json = [], events = [], texts = [];
                stream.on('inputJson', (partial, snapshot) => json.push({ partial, snapshot }));
                stream.on('text', delta => texts.push(delta));
                stream.on('streamEvent', ev => events.push(ev.type === 'content_block_start' ?
                                                           `${ev.type}:${ev.index}:${ev.content_block.type}` :
                                                           ev.type === 'content_block_delta' ?
                                                           `${ev.type}:${ev.index}:${ev.delta.type}` : ev.type));
                const final = await stream.finalMessage();
                return { final, json, events, texts };
        },

        async count_tokens() {
                const r = await client().messages.countTokens({ model: model(), messages, system: 'Be brief.' });
                return { count: r, sent: sent[0].body, sentHeaders: sent[0].headers };
        },

        async models() {
                const ids = [], items = [];
                for await (const m of client().models.list())
                        ids.push(m.id), items.push(m);
                return { ids, items, requests: sent.length };
        },

        async error() {
                return await expectError(() => client().messages.create({ model: model(), max_tokens: 100, messages }),
                                         classes);
        },

        async stream_error() {
                return await expectError(() => client().messages.stream({ model: model(), max_tokens: 100, messages })
                                                 .finalMessage(), classes);
        },
}, classes);
