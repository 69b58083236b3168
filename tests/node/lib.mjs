// Shared by the SDK client scripts: run one named case, print its result as one JSON line.
//
// Usage: node SCRIPT.mjs CASE, with GATE_URL (http://127.0.0.1:PORT), MODEL and API_KEY in the
// environment. The line printed is {"ok": true, "result": ...} or, when the case threw something it did
// not expect, {"ok": false, "thrown": ...} with exit status 1. Cases that expect an error catch it
// themselves and describe it in their result, so the test asserts on the SDK's own error object.

export function need(name) {
        const v = process.env[name];
        if (v === undefined || v === '')
                throw new Error(`${name} is not set`);
        return v;
}

export function env(name, fallback) {
        const v = process.env[name];
        return v === undefined || v === '' ? fallback : v;
}

// A fetch that remembers what the SDK actually put on the wire (method, URL, headers, body).
export function recordingFetch(log) {
        return async (url, init = {}) => {
                const headers = {};
                new Headers(init.headers || {}).forEach((v, k) => { headers[k] = v; });
                const body = typeof init.body === 'string' ? init.body : init.body == null ? null : '<not a string>';
                log.push({ method: init.method || 'GET', url: String(url), headers, body });
                return fetch(url, init);
        };
}

// What a test needs to know about an error the SDK raised: its class (and the SDK classes it is an
// instance of), the HTTP status and the parsed error body.
export function describeError(e, classes = {}) {
        const d = {
                name: e?.constructor?.name ?? typeof e,
                message: String(e?.message ?? e),
                status: e?.status ?? null,
                error: e?.error ?? null,
                code: e?.code ?? null,
                type: e?.type ?? null,
                requestID: e?.requestID ?? e?.request_id ?? null,
                instanceOf: [],
        };
        for (const [name, cls] of Object.entries(classes))
                if (typeof cls === 'function' && e instanceof cls)
                        d.instanceOf.push(name);
        return d;
}

// Calls fn, which must throw; returns the description of what it threw.
export async function expectError(fn, classes) {
        let value;
        try {
                value = await fn();
        } catch (e) {
                return describeError(e, classes);
        }
        return { name: null, message: 'no error was thrown', value };
}

export async function run(cases, classes) {
        const name = process.argv[2];
        const fn = cases[name];
        if (!fn) {
                process.stdout.write(JSON.stringify({ ok: false, thrown: { message: `unknown case ${name}`,
                                                                           cases: Object.keys(cases) } }) + '\n');
                process.exit(2);
        }
        try {
                const result = await fn();
                process.stdout.write(JSON.stringify({ ok: true, result }) + '\n');
        } catch (e) {
                process.stderr.write(`${e?.stack ?? e}\n`);
                process.stdout.write(JSON.stringify({ ok: false, thrown: describeError(e, classes) }) + '\n');
                process.exitCode = 1;
        }
}
