/* The LLM API routes: OpenAI's and Anthropic's endpoints, forwarded to providers, and the model list. */
#pragma once

#include "http/request.h"

typedef struct Manager Manager;

int api_forward(Request *r, Manager *m);        /* POST /v1/chat/completions, /v1/messages, ... */
int api_models(Request *r, Manager *m);         /* GET /v1/models and /v1/models/{id} */
int api_metrics(Request *r, Manager *m);        /* GET /metrics (Prometheus text) */
