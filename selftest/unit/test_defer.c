/*
 * Unit tests: requests answered inside _send finish together, in one
 * loop turn, in order, and never after they were freed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>

#include <talloc.h>
#include <tevent.h>

#include "asvfs_defer.h"

struct answer_state {
	int value;
};

#define MAX_SEEN 2048

/* What the callers saw, in order. */
static int seen[MAX_SEEN];
static int n_seen;

static void finish_done(struct tevent_req *req)
{
	tevent_req_done(req);
}

static void finish_error(struct tevent_req *req)
{
	tevent_req_error(req, EIO);
}

/* A _send that knows its answer at once. */
static struct tevent_req *answer_send(TALLOC_CTX *mem_ctx,
				      struct tevent_context *ev, int value,
				      bool fail)
{
	struct tevent_req *req = NULL;
	struct answer_state *state = NULL;

	req = tevent_req_create(mem_ctx, &state, struct answer_state);
	if (req == NULL) {
		return NULL;
	}
	state->value = value;
	return asvfs_defer_finish(req, ev, fail ? finish_error : finish_done);
}

static void answered(struct tevent_req *req)
{
	struct answer_state *state = tevent_req_data(req,
						     struct answer_state);
	enum tevent_req_state req_state;
	uint64_t err = 0;

	if (tevent_req_is_error(req, &req_state, &err)) {
		seen[n_seen++] = -state->value;
	} else {
		seen[n_seen++] = state->value;
	}
	talloc_free(req);
}

static struct tevent_req *ask(TALLOC_CTX *mem, struct tevent_context *ev,
			      int value, bool fail)
{
	struct tevent_req *req = answer_send(mem, ev, value, fail);

	assert_non_null(req);
	tevent_req_set_callback(req, answered, NULL);
	return req;
}

static int setup(void **state)
{
	TALLOC_CTX *mem = talloc_new(NULL);

	n_seen = 0;
	*state = mem;
	return 0;
}

static int teardown(void **state)
{
	talloc_free(*state);
	return 0;
}

static void thousand_answers_take_one_loop_turn(void **state)
{
	struct tevent_context *ev = tevent_context_init(*state);
	int i;

	for (i = 1; i <= 1000; i++) {
		assert_true(tevent_req_is_in_progress(
			ask(*state, ev, i, i % 7 == 0)));
	}
	assert_int_equal(n_seen, 0);	/* never inside _send */
	assert_int_equal(tevent_loop_once(ev), 0);
	assert_int_equal(n_seen, 1000);
	for (i = 1; i <= 1000; i++) {
		assert_int_equal(seen[i - 1], i % 7 == 0 ? -i : i);
	}
}

static void a_freed_request_is_never_finished(void **state)
{
	struct tevent_context *ev = tevent_context_init(*state);
	struct tevent_req *middle = NULL;

	ask(*state, ev, 1, false);
	middle = ask(*state, ev, 2, false);
	ask(*state, ev, 3, false);
	talloc_free(middle);
	assert_int_equal(tevent_loop_once(ev), 0);
	assert_int_equal(n_seen, 2);
	assert_int_equal(seen[0], 1);
	assert_int_equal(seen[1], 3);
}

static struct tevent_req *victim;

static void answered_and_free_the_victim(struct tevent_req *req)
{
	answered(req);
	TALLOC_FREE(victim);
}

static void a_callback_may_free_one_still_waiting(void **state)
{
	struct tevent_context *ev = tevent_context_init(*state);
	struct tevent_req *first = ask(*state, ev, 1, false);

	tevent_req_set_callback(first, answered_and_free_the_victim, NULL);
	victim = ask(*state, ev, 2, false);
	ask(*state, ev, 3, false);
	assert_int_equal(tevent_loop_once(ev), 0);
	assert_int_equal(n_seen, 2);
	assert_int_equal(seen[0], 1);
	assert_int_equal(seen[1], 3);
}

static struct tevent_context *asking_ev;
static TALLOC_CTX *asking_mem;

static void answered_and_ask_again(struct tevent_req *req)
{
	answered(req);
	if (n_seen < 5) {
		struct tevent_req *again = ask(asking_mem, asking_ev,
					       10 + n_seen, false);

		tevent_req_set_callback(again, answered_and_ask_again, NULL);
	}
}

static void asked_in_a_callback_waits_for_the_next_turn(void **state)
{
	struct tevent_req *req = NULL;
	int turns = 0;

	asking_mem = *state;
	asking_ev = tevent_context_init(*state);
	req = ask(*state, asking_ev, 1, false);
	tevent_req_set_callback(req, answered_and_ask_again, NULL);
	while (n_seen < 5 && turns < 100) {
		assert_int_equal(tevent_loop_once(asking_ev), 0);
		turns++;
		assert_int_equal(n_seen, turns);	/* one per turn */
	}
	assert_int_equal(n_seen, 5);
}

static void another_context_is_answered_on_its_own(void **state)
{
	struct tevent_context *ev1 = tevent_context_init(*state);
	struct tevent_context *ev2 = tevent_context_init(*state);

	ask(*state, ev1, 1, false);
	ask(*state, ev2, 2, false);
	assert_int_equal(tevent_loop_once(ev2), 0);
	assert_int_equal(n_seen, 1);
	assert_int_equal(seen[0], 2);
	assert_int_equal(tevent_loop_once(ev1), 0);
	assert_int_equal(n_seen, 2);
	assert_int_equal(seen[1], 1);
}

static void a_freed_context_does_not_stall_the_next(void **state)
{
	struct tevent_context *ev1 = tevent_context_init(*state);
	struct tevent_context *ev2 = tevent_context_init(*state);
	struct tevent_req *req = ask(*state, ev1, 1, false);

	talloc_free(req);
	talloc_free(ev1);	/* with our immediate scheduled on it */
	ask(*state, ev2, 2, false);
	assert_int_equal(tevent_loop_once(ev2), 0);
	assert_int_equal(n_seen, 1);
	assert_int_equal(seen[0], 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			thousand_answers_take_one_loop_turn, setup, teardown),
		cmocka_unit_test_setup_teardown(
			a_freed_request_is_never_finished, setup, teardown),
		cmocka_unit_test_setup_teardown(
			a_callback_may_free_one_still_waiting, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			asked_in_a_callback_waits_for_the_next_turn, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			another_context_is_answered_on_its_own, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			a_freed_context_does_not_stall_the_next, setup,
			teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
