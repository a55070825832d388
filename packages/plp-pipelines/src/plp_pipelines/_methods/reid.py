"""``reid``: CMC, mAP, mINP and precision metrics by the run's protocol; optional re-ranking."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from plp_pipelines._methods import METHODS, EvaluationContext, EvaluationMethod

__all__ = ["Reid"]

RANK_LIST_QUERIES = 8
RANK_LIST_TOP_K = 8


@METHODS.register("reid", order=20, default=True)
class Reid(EvaluationMethod):
    """Re-ID ranking metrics by ``[evaluate] protocol`` (every match ranked, exactly).

    ``trainval_test``: test queries, trainval gallery; ``query_gallery``: the dataset's own
    query and gallery splits and cameras; ``test_leave_one_out``: each test image queries the
    rest. With ``[evaluate] rerank`` the k-reciprocal re-ranked numbers go beside the plain ones
    (section ``reid_reranked``). Under torch.distributed every rank ranks a share of the queries.
    """

    sections = ("reid", "reid_reranked")
    plots = ("cmc", "rank_list", "distances")
    every_rank = True
    headline = (
        ("reid", "rank-1", "reid rank-1"),
        ("reid", "rank-5", "reid rank-5"),
        ("reid", "mAP", "reid mAP"),
        ("reid", "mINP", "reid mINP"),
        ("reid", "precision@1", "reid precision@1"),
        ("reid", "R-precision", "reid R-precision"),
        ("reid", "MAP@R", "reid MAP@R"),
        ("reid_reranked", "rank-1", "reid re-ranked rank-1"),
        ("reid_reranked", "mAP", "reid re-ranked mAP"),
    )

    def __init__(self) -> None:
        self._result: Any = None  # the typed ReidMetrics, for the plots

    def compute(self, context: EvaluationContext) -> dict[str, dict[str, Any]]:
        """Return ``{"reid": ...}`` (and ``"reid_reranked"`` with ``[evaluate] rerank``)."""
        import plp_eval

        settings = context.config.evaluate
        query = context.features[context.query_split]
        gallery = context.features[context.gallery_split]
        with_cameras = query.cameras is not None and gallery.cameras is not None
        common: dict[str, Any] = {
            "query_cameras": query.cameras if with_cameras else None,
            "gallery_cameras": gallery.cameras if with_cameras else None,
            "metric": settings.reid_metric,
            "max_rank": settings.max_rank,
            "query_in_gallery": settings.protocol == "test_leave_one_out",
        }
        arrays = (query.features, query.labels, gallery.features, gallery.labels)
        self._result = plp_eval.reid_metrics(
            *arrays, **common, device=context.device, distributed=context.distributed
        )
        described = {
            "metric": settings.reid_metric,
            "query": context.query_split,
            "gallery": context.gallery_split,
        }
        output: dict[str, dict[str, Any]] = {"reid": {**described, **self._result.to_dict()}}
        if settings.rerank:
            reranked = plp_eval.rerank_reid_metrics(
                *arrays,
                **common,
                k1=settings.rerank_k1,
                k2=settings.rerank_k2,
                lambda_value=settings.rerank_lambda,
                device=context.device if context.device.type == "cuda" else None,
            )
            output["reid_reranked"] = {
                **described,
                "k1": settings.rerank_k1,
                "k2": settings.rerank_k2,
                "lambda": settings.rerank_lambda,
                **reranked.to_dict(),
            }
        return output

    def draw(self, context: EvaluationContext, plot_path: Callable[[str], Path]) -> dict[str, Path]:
        """Draw the CMC curve, rank lists of the worst and some random queries, the histogram."""
        import plp_viz

        config = context.config
        query = context.features[context.query_split]
        plots: dict[str, Path] = {
            "cmc": plp_viz.plot_cmc(
                self._result.cmc,
                plot_path("cmc.png"),
                max_rank=config.evaluate.max_rank,
                title=f"{config.name}: CMC ({context.query_split} vs {context.gallery_split})",
            )
        }
        rank_list = self._draw_rank_list(context, plot_path)
        if rank_list is not None:
            plots["rank_list"] = rank_list
        if len(query.labels) >= 2:
            plots["distances"] = plp_viz.plot_distance_histogram(
                query.features,
                query.labels,
                plot_path("distance_histogram.png"),
                metric=config.evaluate.reid_metric,
                seed=config.seed,
            )
        return plots

    def _draw_rank_list(
        self, context: EvaluationContext, plot_path: Callable[[str], Path]
    ) -> Path | None:
        """Draw the worst queries (lowest AP) above random ones with their top-k gallery images."""
        import numpy as np

        import plp_eval
        import plp_viz

        config = context.config
        query = context.features[context.query_split]
        gallery = context.features[context.gallery_split]
        leave_one_out = context.query_split == context.gallery_split
        average_precision = np.asarray(self._result.average_precision, dtype=np.float64)
        if not np.isfinite(average_precision).any():
            return None
        num_worst = RANK_LIST_QUERIES // 2
        worst, random = plp_viz.rank_list_queries(
            average_precision,
            num_worst=num_worst,
            num_random=RANK_LIST_QUERIES - num_worst,
            seed=config.seed,
        )
        chosen = np.concatenate([worst, random])  # worst first, as plot_rank_list expects
        top_k = min(RANK_LIST_TOP_K, len(gallery.labels) - int(leave_one_out))
        indices, _ = plp_eval.rank_lists(
            query.features[chosen],
            gallery.features,
            k=top_k + int(leave_one_out),
            metric=config.evaluate.reid_metric,
        )
        if leave_one_out:  # a query is not its own match: drop it from its list
            indices = np.stack(
                [
                    row[row != query_index][:top_k]
                    for row, query_index in zip(indices, chosen, strict=True)
                ]
            )
        query_set = context.datamodule.split_dataloader(context.query_split).dataset
        gallery_set = context.datamodule.split_dataloader(context.gallery_split).dataset
        query_images = np.stack([np.asarray(query_set[int(i)][0]) for i in chosen])
        shown = np.unique(indices)  # load only the gallery images on show, re-indexed
        gallery_images = np.stack([np.asarray(gallery_set[int(i)][0]) for i in shown])
        return plp_viz.plot_rank_list(
            query_images,
            query.labels[chosen],
            gallery_images,
            gallery.labels[shown],
            np.searchsorted(shown, indices),
            plot_path("rank_list.png"),
            max_queries=len(chosen),
            worst_queries=len(worst),
            query_average_precision=average_precision[chosen],
            class_names=context.data.class_names,
            seed=config.seed,
        )
