"""One probe's up/down state (lvsadmin.health.state): fall and rise in a row, start_down, dynamic weight, ramp."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lvsadmin.health.spec import Check, Result
from lvsadmin.health.state import ServerState, Transition

OK = Result(ok=True, reason="HTTP 200", latency=0.01)
FAIL = Result(ok=False, reason="HTTP 503", latency=0.02)
TIMEOUT = Result(ok=False, reason="timeout after 2.0 s", latency=None)


def feed(state: ServerState, results, start: float = 1.0) -> list[Transition]:
    moves = []
    for i, result in enumerate(results):
        if (move := state.record(result, start + i)) is not None:
            moves.append(move)
    return moves


def test_a_server_that_fails_fall_times_in_a_row_goes_down_with_the_reason_of_the_last_failure():
    state = ServerState(Check(fall=3, rise=2), now=0.0)
    assert feed(state, [FAIL, FAIL]) == []
    assert state.state == "up"
    move = state.record(TIMEOUT, 5.0)
    assert move == Transition(at=5.0, previous="up", state="down", reason="timeout after 2.0 s")
    assert (state.state, state.since, state.reason, state.latency) == ("down", 5.0, "timeout after 2.0 s", None)


def test_a_success_between_failures_resets_the_count():
    state = ServerState(Check(fall=3, rise=2), now=0.0)
    assert feed(state, [FAIL, FAIL, OK, FAIL, FAIL]) == []
    assert state.state == "up"
    assert state.record(FAIL, 9.0) is not None
    assert state.state == "down"


def test_a_down_server_comes_back_after_rise_successes_in_a_row_not_after_one():
    state = ServerState(Check(fall=1, rise=3), now=0.0)
    state.record(FAIL, 1.0)
    assert feed(state, [OK, OK, FAIL, OK, OK], start=2.0) == []
    assert state.state == "down"
    move = state.record(OK, 10.0)
    assert (move.previous, move.state, move.at, move.reason) == ("down", "up", 10.0, "HTTP 200")
    assert (state.since, state.up_since) == (10.0, 10.0)


def test_a_server_that_starts_down_needs_rise_successes_and_then_ramps():
    state = ServerState(Check(rise=2), start_down=True, now=0.0)
    assert state.state == "down" and state.up_since is None
    assert state.record(OK, 1.0) is None
    assert state.record(OK, 2.0).state == "up"
    assert state.up_since == 2.0
    assert state.ramp(7.0, 10) == 0.5


def test_results_of_the_same_kind_as_the_state_move_nothing():
    state = ServerState(Check(fall=1, rise=1), now=0.0)
    assert feed(state, [OK] * 5) == []
    assert state.since == 0.0
    state.record(FAIL, 6.0)
    assert feed(state, [FAIL] * 5, start=7.0) == []
    assert state.since == 6.0


def test_a_dynamic_weight_is_kept_without_a_transition_and_exit_0_restores_the_desired_weight():
    state = ServerState(Check(kind="misc", command="check", dynamic=True), now=0.0)
    assert state.record(Result(ok=True, reason="exit 5 → weight 3", weight=3), 1.0) is None
    assert (state.state, state.dynamic_weight) == ("up", 3)
    assert state.record(Result(ok=True, reason="exit 2 → weight 0", weight=0), 2.0) is None
    assert (state.state, state.dynamic_weight) == ("up", 0)  # keepalived: up, with weight 0
    state.record(Result(ok=False, reason="exit 1"), 3.0)
    assert state.dynamic_weight == 0  # a failure says nothing about the weight
    state.record(Result(ok=True, reason="exit 0"), 4.0)
    assert state.dynamic_weight is None


def test_a_server_that_never_went_down_does_not_ramp():
    state = ServerState(Check(), now=0.0)
    feed(state, [OK, FAIL, OK])
    assert state.ramp(3.0, 60) == 1.0


def test_a_server_that_came_back_ramps_linearly_from_at_least_one_second_to_full():
    state = ServerState(Check(fall=1, rise=1), now=0.0)
    state.record(FAIL, 10.0)
    state.record(OK, 20.0)
    assert state.ramp(20.0, 60) == 1 / 60  # not 0: a returning server gets weight at once
    assert state.ramp(19.0, 60) == 1 / 60  # a clock stepping back does not make it 0 either
    assert state.ramp(50.0, 60) == 0.5
    assert state.ramp(80.0, 60) == 1.0
    assert state.ramp(1000.0, 60) == 1.0
    assert state.ramp(20.0, 0) == 1.0  # no slow start


def test_the_report_names_state_since_reason_latency_and_last_check():
    state = ServerState(Check(fall=1), now=100.0)
    assert state.as_report(str) == {"state": "up", "since": "100.0", "reason": "", "latency": None}
    state.record(Result(ok=False, reason="connect refused", latency=0.003), 105.0)
    assert state.as_report(lambda t: f"T{t:g}") == {"state": "down", "since": "T105", "reason": "connect refused",
                                                    "latency": 0.003, "checked": "T105"}


def test_a_fall_or_rise_of_zero_from_an_older_peer_counts_as_one():
    state = ServerState(Check(fall=0, rise=0), now=0.0)
    assert state.record(FAIL, 1.0).state == "down"
    assert state.record(OK, 2.0).state == "up"


@given(fall=st.integers(1, 5), rise=st.integers(1, 5), start_down=st.booleans(),
       results=st.lists(st.booleans(), max_size=60))
def test_after_any_result_the_state_follows_the_last_run_of_results(fall, rise, start_down, results):
    """Down right after `fall` failures in a row, up right after `rise` successes in a row, otherwise as it was;
    a transition is returned exactly when the state changes."""
    state = ServerState(Check(fall=fall, rise=rise), start_down=start_down, now=0.0)
    seen: list[bool] = []
    for i, ok in enumerate(results, start=1):
        before = state.state
        move = state.record(OK if ok else FAIL, float(i))
        seen.append(ok)
        if len(seen) >= fall and not any(seen[-fall:]):
            expected = "down"
        elif len(seen) >= rise and all(seen[-rise:]):
            expected = "up"
        else:
            expected = before
        assert state.state == expected
        if expected == before:
            assert move is None
        else:
            assert move == Transition(at=float(i), previous=before, state=expected, reason=(OK if ok else FAIL).reason)
            assert state.since == float(i)
        if state.state == "up" and state.up_since is not None:
            assert 0 < state.ramp(float(i), 30) <= 1
