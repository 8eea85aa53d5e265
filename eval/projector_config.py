"""The two Embedding Projector config formats, for one exported embedding.

- `projector_config.pbtxt`: the text-format `ProjectorConfig` proto that TensorBoard's projector
  plugin looks for in each run directory (`tensorboard/plugins/projector/projector_config.proto`).
  It is built with that proto class, so field names and string quoting are the plugin's own.
- `projector_config.json`: the standalone projector's format (projector.tensorflow.org, "Publish" /
  `?config=URL`), whose `tensorPath` is read as raw little-endian float32 when it ends in `.bytes`
  and as TSV otherwise.

Paths are relative to the config file's directory: TensorBoard resolves them there; for the
standalone projector, serve the directory and prefix them with its URL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from google.protobuf import text_format
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

__all__ = ["ProjectorEmbedding", "projector_config_json", "projector_config_pbtxt"]


@dataclass(frozen=True)
class ProjectorEmbedding:
    """One embedding's entry in a projector config.

    Attributes:
        tensor_name: the name the projector shows (and the `name` of the plugin's HTTP routes).
        tensor_shape: (N, D).
        tensor_path: the vectors file (TSV, or raw float32 ending in `.bytes`).
        metadata_path: the metadata TSV.
        sprite_path: the sprite PNG, or None.
        single_image_dim: (tile width, tile height) in px of each sprite thumbnail, or None.
    """

    tensor_name: str
    tensor_shape: tuple[int, int]
    tensor_path: str
    metadata_path: str
    sprite_path: str | None = None
    single_image_dim: tuple[int, int] | None = None


def projector_config_pbtxt(embedding: ProjectorEmbedding) -> str:
    """TensorBoard's `projector_config.pbtxt` text for one embedding.

    Example:
        >>> print(projector_config_pbtxt(ProjectorEmbedding("emb", (3, 2), "vectors.tsv", "metadata.tsv")), end="")
        embeddings {
          tensor_name: "emb"
          metadata_path: "metadata.tsv"
          tensor_shape: 3
          tensor_shape: 2
          tensor_path: "vectors.tsv"
        }
    """
    config = ProjectorConfig()
    entry = config.embeddings.add()
    entry.tensor_name = embedding.tensor_name
    entry.tensor_shape.extend(embedding.tensor_shape)
    entry.tensor_path = embedding.tensor_path
    entry.metadata_path = embedding.metadata_path
    if embedding.sprite_path is not None:
        entry.sprite.image_path = embedding.sprite_path
        entry.sprite.single_image_dim.extend(embedding.single_image_dim or ())
    return text_format.MessageToString(config, as_utf8=True)


def projector_config_json(embedding: ProjectorEmbedding) -> str:
    """The standalone projector's `projector_config.json` text for one embedding.

    Example:
        >>> text = projector_config_json(ProjectorEmbedding("emb", (3, 2), "vectors.bytes", "metadata.tsv"))
        >>> json.loads(text)["embeddings"][0]
        {'tensorName': 'emb', 'tensorShape': [3, 2], 'tensorPath': 'vectors.bytes', 'metadataPath': 'metadata.tsv'}
    """
    entry: dict[str, object] = {
        "tensorName": embedding.tensor_name,
        "tensorShape": list(embedding.tensor_shape),
        "tensorPath": embedding.tensor_path,
        "metadataPath": embedding.metadata_path,
    }
    if embedding.sprite_path is not None:
        entry["sprite"] = {
            "imagePath": embedding.sprite_path,
            "singleImageDim": list(embedding.single_image_dim or ()),
        }
    return json.dumps({"embeddings": [entry]}, indent=2, ensure_ascii=False) + "\n"
