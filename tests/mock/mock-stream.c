/* The mock's streaming fast path: each delta event is its step's template with the piece filled in. */
#include <string.h>

#include "mock.h"
#include "translate/json-fast.h"

/* Why: bench/run pins the mock beside the proxy under test, and at 512 streams x 64 deltas building every
 * chunk in jansson (json_pack, json_dumpb, a malloc per node, printf for the ids) cost the mock about as
 * much CPU as the proxy it was feeding. Within a step only the piece (and, for the Responses API, the
 * sequence number) changes from one event to the next, so the first event of a step is rendered by the
 * endpoint's own render() with markers in their place, the markers are cut out, and every event of the
 * step is then template + escaped piece. render() stays the one description of each event's shape: the
 * template is its output, so the bytes cannot drift from it (tests/integration/test_mock_golden.py
 * checks them against recordings). A template whose markers are not found exactly once (a model name
 * that contains one, say) is not used, and that step's events are rendered by render() as before. */

/* Control characters make the marker's JSON form ("\u0001mock piece\u0001") unlikely in real input. */
#define PIECE_MARKER "\x01mock piece\x01"
#define PIECE_MARKER_JSON "\"\\u0001mock piece\\u0001\""
#define SEQ_MARKER UINT64_C(8070450532247928811)
#define SEQ_MARKER_JSON "\"sequence_number\":8070450532247928811"
#define SEQ_KEY_LEN (sizeof("\"sequence_number\":") - 1)

json_t *stream_piece_json(MockCall *c, const Step *s, uint32_t i) {
        _cleanup_(buf_done) Buf b = {};

        if (c->tpl.marking)
                return json_string(PIECE_MARKER);
        if (c->ep->piece(c, s, i, &b) < 0)
                return NULL;
        return json_from_buf(&b);
}

/* Where needle occurs in the n bytes at p, if it occurs there exactly once. */
static const uint8_t *find_once(const uint8_t *p, size_t n, const char *needle) {
        size_t k = strlen(needle);
        const uint8_t *at = memmem(p, n, needle, k);

        if (!at || memmem(at + 1, n - (size_t) (at + 1 - p), needle, k))
                return NULL;
        return at;
}

/* Renders event i of the current step with markers and cuts them out; leaves tpl.usable false when the
 * markers cannot be told apart from the rest. */
static int template_build(MockCall *c, const Step *s, uint32_t i) {
        DeltaTemplate *t = &c->tpl;
        const uint8_t *base, *seq = NULL, *piece;
        uint64_t saved_seq = c->seq;
        size_t n, seq_len = 0, piece_len = strlen(PIECE_MARKER_JSON);
        int r;

        t->built = true;
        t->step = c->step;
        t->usable = false;
        buf_clear(&t->text);

        t->marking = true;
        if (c->ep->sequenced)
                c->seq = SEQ_MARKER;
        r = c->ep->render(c, s, i, &t->text);
        t->marking = false;
        c->seq = saved_seq;
        if (r < 0)
                return r;

        base = buf_data(&t->text);
        n = buf_len(&t->text);
        piece = find_once(base, n, PIECE_MARKER_JSON);
        if (!piece)
                return 0;
        if (c->ep->sequenced) {
                seq = find_once(base, n, SEQ_MARKER_JSON);
                /* The sequence number comes first in every Responses event; the cutting below relies on it. */
                if (!seq || seq > piece)
                        return 0;
                seq += SEQ_KEY_LEN;
                seq_len = strlen(SEQ_MARKER_JSON) - SEQ_KEY_LEN;
        }

        /* Cut the piece's hole, then the sequence number's, which lies before it. */
        t->piece_at = (size_t) (piece - base);
        memmove(t->text.data + t->text.head + t->piece_at, piece + piece_len, n - t->piece_at - piece_len);
        t->text.tail -= piece_len;
        t->seq_at = 0;
        if (seq) {
                t->seq_at = (size_t) (seq - base);
                memmove(t->text.data + t->text.head + t->seq_at, seq + seq_len,
                        buf_len(&t->text) - t->seq_at - seq_len);
                t->text.tail -= seq_len;
                t->piece_at -= seq_len;
        }
        t->usable = true;
        return 0;
}

int stream_render(MockCall *c, const Step *s, uint32_t i, Buf *out) {
        DeltaTemplate *t = &c->tpl;
        const uint8_t *text;
        int r;

        if (!c->ep->piece)
                return c->ep->render(c, s, i, out);
        buf_clear(&c->piece);
        r = c->ep->piece(c, s, i, &c->piece);
        if (r <= 0)
                return r < 0 ? r : c->ep->render(c, s, i, out);

        if (!t->built || t->step != c->step) {
                r = template_build(c, s, i);
                if (r < 0)
                        return r;
        }
        if (!t->usable)
                return c->ep->render(c, s, i, out);

        text = buf_data(&t->text);
        r = buf_append(out, text, t->seq_at);
        if (r >= 0 && c->ep->sequenced)
                r = buf_append_uint(out, c->seq++, 10);
        if (r >= 0)
                r = buf_append(out, text + t->seq_at, t->piece_at - t->seq_at);
        if (r >= 0)
                r = json_write_string((const char *) buf_data(&c->piece), buf_len(&c->piece), out);
        if (r >= 0)
                r = buf_append(out, text + t->piece_at, buf_len(&t->text) - t->piece_at);
        return r;
}

void stream_done(MockCall *c) {
        buf_done(&c->tpl.text);
        buf_done(&c->piece);
}
