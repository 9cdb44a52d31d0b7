"""The demo's promise: on the MNIST subset, DFA lands within 3 points of backprop."""

from localgrad import demo


def test_demo_dfa_within_three_points_of_backprop(capsys):
    results = demo.run(rules=("backprop", "dfa"), progress=False)
    table = capsys.readouterr().out
    assert "backprop" in table and "dfa" in table
    bp, dfa = results
    assert bp.test_accuracy > 0.9
    assert bp.test_accuracy - dfa.test_accuracy <= 0.03
