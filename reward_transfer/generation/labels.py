"""Label candidates with their domain's verifier (`reward_transfer.domains`): a score and whether it is correct."""

from collections.abc import Sequence

from reward_transfer.domains import get_domain
from reward_transfer.generation.problems import Problem


def label_candidates(problems: Sequence[Problem], responses: Sequence[Sequence[str]], domain: str,
                     verifier_cfg) -> list[dict]:
    """One record per candidate (problem order, then candidate order) with its score and correctness."""
    flat = [(problem, index, response) for problem, group in zip(problems, responses, strict=True)
            for index, response in enumerate(group)]
    labels = get_domain(domain).label(flat, verifier_cfg)
    return [
        {"problem_id": problem.problem_id, "problem": problem.problem, "split": problem.split, "domain": domain,
         "candidate_index": index, "response": response, **label}
        for (problem, index, response), label in zip(flat, labels, strict=True)
    ]
