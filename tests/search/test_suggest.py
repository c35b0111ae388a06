"""Proposing trials: seeded suggestions, TPE learning, no repeats, the constant liar; and what the
ask/tell adapter relies on in hyperopt's internals."""

import math

from search.compile import CompiledSpace, config_hash
from search.space import parse_space
from search.suggest import Search, derive_seed, trial_seed

RAW = {
    "architecture": {
        "depth": {"choice": [1, 2]},
        "layers": {"filters": {"count": {"choice": [4, 8, 16]}, "size": 3}, "padding": "same"},
    },
    "training": {"lr": {"loguniform": [1e-4, 1e-1]}},
}
SETTINGS = {"algo": "tpe", "seed": 0, "tpe": {"startup_trials": 5, "gamma": 0.25, "candidates": 24}}


def compiled(raw=RAW):
    return CompiledSpace(parse_space(raw))


def run(search, n, loss):
    """Ask and tell n trials with a loss computed from the config; the configs in order."""
    configs = []
    for trial in range(n):
        vals, config = search.ask(trial)
        search.tell(trial, vals, loss(config))
        configs.append(config)
    return configs


def lr_loss(config):
    return abs(math.log10(config["training"]["lr"]) + 2)  # best at lr = 0.01


def test_the_same_seed_gives_the_same_suggestions():
    a = run(Search(compiled(), SETTINGS), 12, lr_loss)
    b = run(Search(compiled(), SETTINGS), 12, lr_loss)
    c = run(Search(compiled(), {**SETTINGS, "seed": 1}), 12, lr_loss)
    assert a == b
    assert a != c


def test_suggestions_are_values_and_decode_from_the_vals():
    search = Search(compiled(), SETTINGS)
    vals, config = search.ask(0)
    assert compiled().decode(vals) == config
    assert config["architecture"]["layers"][0]["filters"]["count"] in (4, 8, 16)
    assert all(isinstance(v, list) for v in vals.values())


def test_tpe_learns_from_told_losses():
    # after the random start-up, TPE proposes learning rates near the best one more often than random search
    def near(configs):
        return sum(lr_loss(c) < 0.25 for c in configs[10:])  # random: 1 in 6

    tpe = run(Search(compiled(), {**SETTINGS, "tpe": {**SETTINGS["tpe"], "startup_trials": 10}}), 40, lr_loss)
    rand = run(Search(compiled(), {**SETTINGS, "algo": "random"}), 40, lr_loss)
    assert near(tpe) > near(rand)


def test_a_repeat_of_an_evaluated_configuration_is_drawn_again():
    small = {  # two configurations in all
        "architecture": {"depth": 1, "layers": {"filters": {"count": {"choice": [4, 8]}, "size": 3}}},
    }
    search = Search(compiled(small), {**SETTINGS, "algo": "random"})
    vals, first = search.ask(0)
    search.tell(0, vals, 0.5)
    _, second = search.ask(1, avoid={config_hash(first)})
    assert second != first


def test_trials_in_flight_are_told_as_the_worst_loss_so_far_and_only_while_asking():
    search = Search(compiled(), {**SETTINGS, "tpe": {**SETTINGS["tpe"], "startup_trials": 10}})
    run(search, 30, lr_loss)
    docs = list(search.trials.trials)
    best = min(docs, key=lambda d: d["result"]["loss"])
    in_flight = {100 + i: best["misc"]["vals"] for i in range(6)}  # six workers on the best point

    def distance(asks):
        return sum(lr_loss(config) for _, config in asks) / len(asks)

    alone = [search.ask(200 + i) for i in range(20)]
    crowded = [search.ask(200 + i, pending=in_flight) for i in range(20)]
    assert search.trials.trials == docs  # the lies are gone once the suggestion is made
    # TPE reads the crowded best point as bad, so it proposes farther from it
    assert distance(crowded) > distance(alone)


def test_trials_in_flight_change_nothing_during_the_random_start_up():
    search = Search(compiled(), SETTINGS)
    vals, _ = search.ask(0)
    assert search.ask(1, pending={0: vals}) == search.ask(1)


def test_failed_trials_are_told_without_a_loss():
    search = Search(compiled(), SETTINGS)
    vals, _ = search.ask(0)
    search.tell(0, vals, None)
    (doc,) = search.trials.trials
    assert doc["result"] == {"status": "fail"}
    assert search.trials.losses() == [None]


def test_seeds_are_derived_stably_per_trial():
    assert trial_seed(0, 3) == trial_seed(0, 3)
    assert len({trial_seed(0, t) for t in range(100)}) == 100
    assert trial_seed(0, 3) != trial_seed(1, 3)
    assert 0 <= derive_seed(123, 4, 5) < 2**31


# ---------------------------------------------------------------- what the adapter relies on in hyperopt


def test_hyperopt_trials_internals_the_adapter_relies_on():
    """``Search`` drives hyperopt 0.3's ``Trials`` through these documented-nowhere behaviours;
    a hyperopt release that changes one of them fails here first."""
    from hyperopt import JOB_STATE_DONE, STATUS_FAIL, STATUS_OK, Trials

    search = Search(compiled(), SETTINGS)
    vals, _ = search.ask(0)
    # a finished document inserted and refreshed is in the view TPE reads, with its result
    search.tell(0, vals, 0.25)
    search.tell(1, vals, None)
    assert isinstance(search.trials, Trials)
    assert [d["tid"] for d in search.trials.trials] == [0, 1]
    assert [d["state"] for d in search.trials.trials] == [JOB_STATE_DONE] * 2
    assert [d["result"]["status"] for d in search.trials.trials] == [STATUS_OK, STATUS_FAIL]
    assert search.trials.losses() == [0.25, None]
    assert search.trials.trials[0]["misc"]["vals"] == vals
    # the view a tell appends to, in constant time, is the one refresh() rebuilds from _dynamic_trials
    view = list(search.trials.trials)
    search.trials.refresh()
    assert search.trials.trials == view and search.trials._ids == {0, 1}


def test_a_constant_time_tell_suggests_exactly_what_a_refreshed_history_does():
    """``tell`` appends to hyperopt's view instead of rebuilding it over the whole history (and
    the constant liar takes its lies off the end): the same seed and history give the same
    suggestions as refreshing after every change, with workers in flight too."""

    class Refreshed(Search):  # the whole-history refresh, after every insert and every lie
        def _insert(self, trial, vals, loss):
            super()._insert(trial, vals, loss)
            self.trials.refresh()

        def ask(self, trial, avoid=frozenset(), pending=None):
            try:
                return super().ask(trial, avoid, pending)
            finally:
                self.trials.refresh()

    fast, slow = Search(compiled(), SETTINGS), Refreshed(compiled(), SETTINGS)
    asked = []
    for trial in range(40):
        pending = {trial - k: asked[trial - k][0] for k in (1, 2) if trial - k >= 0 and trial % 3}
        got = fast.ask(trial, pending=pending), slow.ask(trial, pending=pending)
        assert got[0] == got[1]
        asked.append(got[0])
        if trial % 3 == 0:  # every third result is told: the others stay in flight as lies
            for search in (fast, slow):
                search.tell(trial, got[0][0], lr_loss(got[0][1]) if trial % 2 else None)
    assert fast.trials.trials == slow.trials.trials
    assert [d["tid"] for d in fast.trials._dynamic_trials] == [d["tid"] for d in slow.trials.trials]


def test_tpe_draws_as_random_search_before_its_startup_trials_and_ranks_failures_worst():
    """``ask`` calls random search itself during TPE's start-up (the same draws, without TPE's
    model); and a trial told without a loss counts for TPE as the worst (an infinite loss)."""
    from hyperopt import Domain, rand, tpe

    search = Search(compiled(), SETTINGS)
    run(search, 3, lr_loss)
    domain = Domain(lambda config: 0.0, compiled().expr)
    by_tpe = tpe.suggest([3], domain, search.trials, 123, n_startup_jobs=5)[0]["misc"]["vals"]
    by_rand = rand.suggest([3], domain, search.trials, 123)[0]["misc"]["vals"]
    assert by_tpe == by_rand

    # failures where lr < 1e-2.5, a flat loss elsewhere: TPE soon stops proposing the failing half
    failing = {**SETTINGS, "tpe": {**SETTINGS["tpe"], "startup_trials": 10}}

    def loss(config):
        return None if config["training"]["lr"] < 10**-2.5 else 0.5

    def failed(algo):  # after the start-up, over three campaigns
        seeds = [{**failing, "algo": algo, "seed": seed} for seed in range(3)]
        return sum(loss(c) is None for s in seeds for c in run(Search(compiled(), s), 40, loss)[10:])

    assert failed("tpe") < 0.8 * failed("random")


def test_tpe_suggests_exactly_what_hyperopts_tpe_suggest_does():
    """``Search`` keeps TPE's observations as results come in and builds its model's graph once;
    its suggestions are those of ``tpe.suggest`` over hyperopt's documents, for a conditional
    space of the size of pinto_cox's, with results told out of order, failures, a trial told
    twice, and trials in flight told as lies (the way this adapter called ``tpe.suggest``)."""
    from functools import partial

    from hyperopt import rand, tpe

    from search.space import load_space
    from search.suggest import REDRAWS, plain

    class ByHyperopt(Search):
        def ask(self, trial, avoid=frozenset(), pending=None):
            algo = partial(tpe.suggest, n_startup_jobs=self.startup, gamma=0.25, n_EI_candidates=24)
            algo = rand.suggest if len(self.trials.trials) < self.startup else algo
            lies = [t for t in (pending or {}) if algo is not rand.suggest and t not in self.told]
            losses = [x for x in self.trials.losses() if x is not None]
            for t in lies:
                self._insert(t, pending[t], max(losses, default=1.0))
            try:
                for redraw in range(REDRAWS + 1):
                    doc = algo([trial], self.domain, self.trials, derive_seed(self.seed, trial, 1, redraw))[0]
                    vals = plain(doc["misc"]["vals"])
                    config = self.compiled.decode(vals)
                    if config_hash(config) not in avoid:
                        break
            finally:
                if lies:
                    del self.trials._dynamic_trials[-len(lies) :]
                    del self.trials._trials[-len(lies) :]
            return vals, config

    space = CompiledSpace(load_space("spaces/pinto_cox.yaml"))
    settings = {**SETTINGS, "seed": 7, "tpe": {**SETTINGS["tpe"], "startup_trials": 8}}
    ours, theirs = Search(space, settings), ByHyperopt(space, settings)
    asked, waiting = {}, []
    for trial in range(70):
        pending = {t: asked[t] for t in waiting}
        got = ours.ask(trial, pending=pending)
        assert got == theirs.ask(trial, pending=pending), trial
        asked[trial] = got[0]
        waiting.append(trial)
        if trial % 4 != 1:  # the oldest but one in flight ends first: results come out of order
            t = waiting.pop(-2 if len(waiting) > 1 else 0)
            loss = None if t % 7 == 3 else (hash(config_hash(space.decode(asked[t]))) % 1000) / 1000
            for search in (ours, theirs):
                search.tell(t, asked[t], loss)
        if trial == 40:  # a trial told twice (a worse result, then a better one)
            for search in (ours, theirs):
                search.tell(2, asked[2], 0.999)
                search.tell(2, asked[2], 0.0005)
    assert ours.observed.tids == sorted(ours.told)
