"""The storage tasks: ``factual_recall`` holds every fact in every split, answers drawn from
the relation's own D, sequences laid out as the paper's; ``associations`` maps every input
once; the metrics count facts and their bits; bad options are one line."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bitnas.errors import BitnasError
from bitnas.registry import TASKS


def _task(**kw):
    return TASKS.create("factual_recall", **{"subjects": 6, "relations": 5, "answers": 4, "length": 10,
                                              "contexts": 3, **kw})


def test_every_fact_appears_and_answers_come_from_the_relations_own_d():
    task = _task()
    data = task.load(0)
    s, r, d = task.subjects, task.relations, task.answers
    assert task.num_facts == 30 and task.num_classes == r * d
    assert task.input_vocab == s + r + (s + r) + 1 and task.input_shape == (10,)
    table = task.answer_table(0)
    assert torch.equal(table // d, torch.arange(r).expand(s, r))  # relation r's answers: r*D..r*D+D-1
    assert len(torch.unique(table)) > r  # and drawn among them, not one per relation
    for split, copies in ((data.train, 3), (data.val, 1), (data.test, 1)):
        x = split.x.long()
        assert x.shape == (30 * copies, 10) and split.x.dtype == torch.float32
        assert (x[:, -1] == task.end_token).all()
        body = x[:, :-1]
        subj = body < s
        rel = (body >= s) & (body < s + r)
        assert (subj.sum(1) == 1).all() and (rel.sum(1) == 1).all()  # one of each, at distinct places
        assert ((body >= s + r) & (body < s + r + task.noise)).sum(1).eq(7).all()  # the rest is noise
        subject = body[subj]
        relation = body[rel] - s
        assert torch.equal(split.y, table[subject, relation])  # the label is the fact's answer
        facts = subject * r + relation
        assert torch.equal(torch.bincount(facts, minlength=30), torch.full((30,), copies))  # every fact
    # positions are random: the subject is not always in one place
    assert len(torch.unique((data.train.x.long()[:, :-1] < s).float().argmax(1))) > 3
    # deterministic by seed; another seed, other facts
    again = task.load(0)
    assert torch.equal(again.val.x, data.val.x) and torch.equal(again.val.y, data.val.y)
    assert not torch.equal(task.answer_table(1), table)
    # validation and test contexts are fresh
    assert not torch.equal(data.val.x, data.test.x)


class _Oracle(nn.Module):
    """Reads the subject and the relation off the sequence and answers from the table."""

    def __init__(self, task, table, wrong=0):
        super().__init__()
        self.task, self.table, self.wrong = task, table, wrong

    def forward(self, x):
        body = x.long()[:, :-1]
        s, r = self.task.subjects, self.task.relations
        subject = torch.where(body < s, body, 0).sum(1)
        relation = torch.where((body >= s) & (body < s + r), body - s, 0).sum(1)
        answer = self.table[subject, relation].clone()
        answer[: self.wrong] = (answer[: self.wrong] + 1) % self.task.num_classes
        return nn.functional.one_hot(answer, self.task.num_classes).float()


def test_storage_metrics_count_facts_and_their_bits():
    task = _task()
    data = task.load(0)
    table = task.answer_table(0)
    ev = task.evaluator(data)
    perfect = ev.evaluate(_Oracle(task, table))
    assert perfect == {"accuracy": 1.0, "facts": 30.0, "fact_bits": 60.0,  # log2 4 = 2 bits a fact
                       "test_accuracy": 1.0, "test_facts": 30.0, "test_fact_bits": 60.0}
    some = ev.evaluate(_Oracle(task, table, wrong=3), splits=("val",))
    assert some == pytest.approx({"accuracy": 27 / 30, "facts": 27.0, "fact_bits": 54.0})


def test_associations_map_every_input_once():
    task = TASKS.create("associations", inputs=50, outputs=7)
    data = task.load(3)
    assert task.input_vocab == 50 and task.num_classes == 7 and task.input_shape == (1,)
    for split in (data.train, data.val, data.test):
        assert torch.equal(split.x.squeeze(1).long(), torch.arange(50))
    assert int(data.val.y.max()) < 7 and len(torch.unique(data.val.y)) > 1
    assert TASKS.create("associations", inputs=20).num_classes == 20  # M = N by default
    lookup = nn.Module()
    lookup.forward = lambda x: nn.functional.one_hot(data.val.y[x.long().squeeze(1)], 7).float()
    assert task.evaluator(data).evaluate(lookup)["fact_bits"] == pytest.approx(50 * math.log2(7))


@pytest.mark.parametrize("kw,match", [
    ({"subjects": 0}, r"task\.subjects must be an integer >= 1, got 0"),
    ({"answers": 1}, r"task\.answers must be an integer >= 2"),
    ({"length": 2}, r"task\.length must be an integer >= 3"),
    ({"contexts": 1.5}, r"task\.contexts must be an integer"),
    ({"subjects": 2000, "contexts": 2000}, r"over 5,000,000 training sequences"),
])
def test_bad_options_are_one_line(kw, match):
    with pytest.raises(BitnasError, match=match) as e:
        _task(**kw)
    assert "\n" not in str(e.value)
