"""Figures taken against their baseline in turn, so both meet the same machine load.

On a shared 2-core box one run can be a third faster or slower than the next; a figure
taken minutes after its baseline carries that noise into its ratio. `against` runs the
baseline and each measured side in turn, `rounds` times, and keeps the median of each
side's ratios to the baseline of its own round (one disturbed run cannot pick it)."""
import statistics


def against(rounds, baseline, *measured):
    """(baseline's median run, [each measured side's median run, with 'ratio': the median
    of its rounds' ratios, 'pair_ratios': each round's, and 'problems': those of all its
    runs]). A median run is a whole run, so that its CPU split belongs to its rate."""
    rounds_run = [(baseline(), [measure() for measure in measured]) for _ in range(rounds)]
    sides = []
    for n in range(len(measured)):
        ratios = [runs[n]['rate'] / base['rate'] for base, runs in rounds_run]
        sides.append({**median_run([runs[n] for _, runs in rounds_run]),
                      'ratio': round(statistics.median(ratios), 3),
                      'pair_ratios': [round(r, 3) for r in ratios],
                      'problems': [p for _, runs in rounds_run
                                   for p in runs[n].get('problems', [])]})
    return median_run([base for base, _ in rounds_run]), sides


def median_run(runs):
    return sorted(runs, key=lambda run: run['rate'])[len(runs) // 2]
