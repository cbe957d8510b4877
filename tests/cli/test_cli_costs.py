"""polyguide explain: cost terms, their backward passes and cost evaluations."""

from framework.cli.main import main


def test_explain_states_what_a_cost_term_costs(capsys):
    assert main(["explain", "cfg(text, 3) + cost(trajectory, 2, through_model=true).within(0.2, 0.8)",
                 "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "cost term    cost('trajectory', through_model=True): direction −∇ cost(x̂0) added in x0 " \
           "space, x̂0 of cond('text')" in out
    assert "step   0  τ=0.00  NFE 2  forwards 1  backward 0  cost evals 0" in out
    assert "step   2  τ=0.50  NFE 2  forwards 2  backward 1  cost evals 1" in out
    assert "total NFE 10 (2.00 per step), backward passes 3, cost evaluations 3" in out


def test_explain_cost_in_x0_space_needs_no_backward(capsys):
    assert main(["explain", "uncond + 2*(cond(text) - uncond) + cost(trajectory, 2)", "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "no backward pass through the network" in out
    assert "total NFE 6 (2.00 per step), backward passes 0, cost evaluations 3" in out


def test_a_lone_cost_term_is_a_user_error(capsys):
    assert main(["explain", "cost(trajectory, 2)"]) == 2
    err = capsys.readouterr().err
    assert "sum to 0" in err and "Traceback" not in err
