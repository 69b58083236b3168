// Shared by the translation scripts (translate-anthropic.mjs, translate-openai.mjs): a fetch that keeps the
// raw bytes the SDK parsed, response headers, model directives and the tool definitions.
//
// The environment is lib.mjs's: GATE_URL, MODEL (a base model name; cases append mock directives such as
// "+tools=2" to it per turn) and API_KEY.

// A fetch that records what the SDK sent (method, URL, headers, body) and a copy of every response body as
// text (entry.raw, a promise of {text, error}): the bytes the SDK's own parser got, for the test to check
// the event sequence of exactly the stream the SDK accepted.
export function teeFetch(log) {
        return async (url, init = {}) => {
                const headers = {};
                new Headers(init.headers || {}).forEach((v, k) => { headers[k] = v; });
                const entry = { method: init.method || 'GET', url: String(url), headers,
                                body: typeof init.body === 'string' ? init.body : init.body == null ? null : '<not a string>' };
                log.push(entry);
                const res = await fetch(url, init);
                entry.status = res.status;
                entry.responseHeaders = headersOf(res);
                if (!res.body) {
                        entry.raw = Promise.resolve({ text: '', error: null });
                        return res;
                }
                const [mine, theirs] = res.body.tee();
                entry.raw = (async () => {
                        const chunks = [];
                        const dec = new TextDecoder();
                        let error = null;
                        try {
                                for await (const c of mine)
                                        chunks.push(dec.decode(c, { stream: true }));
                        } catch (e) {
                                error = String(e?.cause?.code ?? e?.code ?? e?.message ?? e);
                        }
                        return { text: chunks.join(''), error };
                })();
                return new Response(theirs, { status: res.status, statusText: res.statusText, headers: res.headers });
        };
}

// What was sent and received, once every response body is read: [{url, body, status, raw, rawError}].
export async function exchanges(log) {
        const out = [];
        for (const e of log) {
                const r = e.raw ? await e.raw : { text: null, error: null };
                out.push({ url: e.url, method: e.method, body: e.body, status: e.status ?? null,
                           headers: e.responseHeaders ?? null, raw: r.text, rawError: r.error });
        }
        return out;
}

export function headersOf(response) {
        const h = {};
        response.headers.forEach((v, k) => { h[k] = v; });
        return h;
}

// MODEL plus mock directives: withDirectives('gpt-x', 'tools=2', 'chunks=3') -> 'gpt-x+tools=2+chunks=3'.
export function withDirectives(model, ...directives) {
        return [model, ...directives.filter(Boolean)].join('+');
}

const schema = { type: 'object', properties: { location: { type: 'string' }, n: { type: 'integer' } },
                 required: ['location'] };

// The mock names its tool calls after the request's tools, in order: call 0 get_weather, call 1 get_time.
export const anthropicTools = [
        { name: 'get_weather', description: 'The weather in a place.', input_schema: schema },
        { name: 'get_time', description: 'The time in a place.', input_schema: schema },
];

export const openaiTools = anthropicTools.map(t => ({
        type: 'function', function: { name: t.name, description: t.description, parameters: t.input_schema } }));

export const responsesTools = anthropicTools.map(t => ({
        type: 'function', name: t.name, description: t.description, parameters: t.input_schema, strict: false }));
