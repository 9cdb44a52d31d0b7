"""The demo's promise: on the MNIST subset, DFA lands within 3 points of backprop."""

from localgrad import demo


def test_demo_dfa_within_three_points_of_backprop(capsys):
    results = demo.run(rules=("backprop", "dfa"), progress=False)
    table = capsys.readouterr().out
    assert "backprop" in table and "dfa" in table
    bp, dfa = results
    assert bp.test_accuracy > 0.9
    assert bp.test_accuracy - dfa.test_accuracy <= 0.03


def test_default_rules_include_eqprop_on_the_mlp_only(monkeypatch):
    from localgrad import cli

    seen = {}
    monkeypatch.setattr(demo, "run", lambda rules, **kw: seen.setdefault(kw["model_name"], rules))
    assert cli.main(["demo"]) == 0 and cli.main(["demo", "--model", "cnn"]) == 0
    assert seen["mlp"] == list(demo.DEFAULT_RULES) and "eqprop" in seen["mlp"]
    assert seen["cnn"] == [r for r in demo.DEFAULT_RULES if r not in demo.MLP_ONLY_RULES]
