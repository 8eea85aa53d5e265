"""Plain-loop references of TensorFlow Addons' triplet losses, written from their description."""

import math


def distance_matrix(x, distance):
    rows = x.tolist()
    n = len(rows)
    d = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            if distance == "angular":
                ni = max(math.sqrt(sum(v * v for v in rows[i])), 1e-6)
                nj = max(math.sqrt(sum(v * v for v in rows[j])), 1e-6)
                cos = sum(a * b for a, b in zip(rows[i], rows[j])) / (ni * nj)
                d[i][j] = max(1.0 - cos, 1e-16)
            elif i != j:
                sq = sum((a - b) ** 2 for a, b in zip(rows[i], rows[j]))
                d[i][j] = sq if distance == "squared_l2" else math.sqrt(sq)
    return d


def semihard_loss(x, labels, margin=1.0, distance="l2"):
    """Σ over ordered positive pairs of max(margin + d_ap − d_an, 0) / number of pairs; d_an = closest
    negative farther than d_ap, else the anchor's farthest negative."""
    y = labels.tolist()
    d = distance_matrix(x, distance)
    total, pairs, fallbacks = 0.0, 0, 0
    for a in range(len(y)):
        negatives = [d[a][n] for n in range(len(y)) if y[n] != y[a]]
        for p in range(len(y)):
            if p == a or y[p] != y[a]:
                continue
            pairs += 1
            farther = [dn for dn in negatives if dn > d[a][p]]
            fallbacks += not farther
            d_an = min(farther) if farther else max(negatives)
            total += max(margin + d[a][p] - d_an, 0.0)
    return total / pairs, pairs, fallbacks


def hard_loss(x, labels, margin=1.0, soft=False, distance="l2"):
    """Mean over all anchors of max(d_ap_max − d_an_min + margin, 0) (or softplus); an anchor without
    positives takes the smallest distance of its row as d_ap, as TF Addons' masked maximum does."""
    y = labels.tolist()
    d = distance_matrix(x, distance)
    total = 0.0
    for a in range(len(y)):
        positives = [d[a][p] for p in range(len(y)) if p != a and y[p] == y[a]]
        negatives = [d[a][n] for n in range(len(y)) if y[n] != y[a]]
        d_ap = max(positives) if positives else min(d[a])
        d_an = min(negatives)
        total += math.log1p(math.exp(d_ap - d_an)) if soft else max(d_ap - d_an + margin, 0.0)
    return total / len(y)
