"""plp-viz: 2-D embeddings (UMAP, AlignedUMAP), captum attributions, torchviz graphs, plots.

Evaluation plots: CMC curves, rank-list grids, confusion matrices, pair-distance histograms.
"""

from plp_viz._attributions import (
    ATTRIBUTIONS,
    available_attributions,
    default_layer,
    explain,
    plot_attributions,
)
from plp_viz._camera_matrix import plot_camera_matrix
from plp_viz._cmc_plot import plot_cmc
from plp_viz._confusion import plot_confusion_matrix
from plp_viz._embedding import Embedding2D, aligned_umap_2d, umap_2d
from plp_viz._errors import PlpVizError
from plp_viz._graph import GraphFiles, layer_summary, model_graph
from plp_viz._html import (
    Interactive,
    file_uri,
    html_page,
    html_rank_lists,
    image_uri,
    interactive_embedding,
)
from plp_viz._image_rows import ImageRow, plot_image_rows
from plp_viz._pair_attributions import PairAttribution, explain_pairs, plot_pair_attributions
from plp_viz._pair_distances import plot_distance_histogram
from plp_viz._plots import plot_aligned, plot_embedding
from plp_viz._rank_list import plot_rank_list, rank_list_queries
from plp_viz._roc_plot import plot_roc
from plp_viz._search_grid import plot_search_results

__all__ = [
    # 2-D embeddings
    "Embedding2D",
    "aligned_umap_2d",
    "plot_aligned",
    "plot_embedding",
    "umap_2d",
    # evaluation plots
    "plot_camera_matrix",
    "plot_cmc",
    "plot_confusion_matrix",
    "plot_distance_histogram",
    "ImageRow",
    "plot_image_rows",
    "plot_rank_list",
    "plot_roc",
    "plot_search_results",
    "rank_list_queries",
    # attributions
    "ATTRIBUTIONS",
    "available_attributions",
    "default_layer",
    "explain",
    "plot_attributions",
    # pairwise attributions: why two images match
    "PairAttribution",
    "explain_pairs",
    "plot_pair_attributions",
    # self-contained HTML
    "Interactive",
    "file_uri",
    "html_page",
    "html_rank_lists",
    "image_uri",
    "interactive_embedding",
    # architecture
    "GraphFiles",
    "layer_summary",
    "model_graph",
    # errors
    "PlpVizError",
]
