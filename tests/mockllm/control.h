/*
 * control.h - the mock's own endpoints: /healthz and everything under /_mock/.
 *
 *   GET    /healthz       200 "ok"
 *   POST   /_mock/faults  queue a fault (JSON body, see control.c)
 *   GET    /_mock/faults  list queued faults
 *   DELETE /_mock/faults  clear queued faults
 *   GET    /_mock/stats   counters as JSON
 *   POST   /_mock/reset   zero the counters and clear the faults
 *
 * None of them needs authentication, and faults never apply to them.
 *
 * Thread: called on the worker thread that owns the request.
 */
#ifndef MOCK_CONTROL_H
#define MOCK_CONTROL_H

#include <h2o.h>

/* Answers req if its path is a control endpoint and returns 1; else returns 0. */
int mock_control_handle(h2o_req_t *req);

#endif
