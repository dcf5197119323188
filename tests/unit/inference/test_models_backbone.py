"""The MiniLM encoder computes what the reference BERT implementation computes on the
shipped weights, and the duplicate model's segment isolation is exact."""

from __future__ import annotations

import torch

from stoker.inference.backbone import BackboneFiles, MiniLM, backbone_id, key_mask_bias
from stoker.inference.heads import pair_features, sentence_embedding
from stoker.inference.tokenizer import WordPieceTokenizer
from stoker.ports.inference import PaddedBatch


def _tensors(batch: PaddedBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.tensor(batch.input_ids),
        torch.tensor(batch.attention_mask),
        torch.tensor(batch.token_type_ids),
    )


def test_encoder_matches_transformers_bert(
    backbone: MiniLM, backbone_files: BackboneFiles, tokenizer: WordPieceTokenizer
) -> None:
    """Hidden states equal transformers' BertModel loaded offline from the same files."""
    from transformers import BertModel

    reference = BertModel.from_pretrained(
        str(backbone_files.directory), local_files_only=True, add_pooling_layer=False
    ).eval()
    batch = tokenizer.pad(
        [
            tokenizer.encode("where is my order", max_len=16),
            tokenizer.encode("blue mug", "blue coffee mug, 12 oz", max_len=16),
        ],
        batch_size=2,
        seq_len=16,
    )
    ids, mask, types = _tensors(batch)
    positions = torch.arange(16).expand(2, 16)
    with torch.inference_mode():
        ours = backbone(ids, types, positions, key_mask_bias(mask))
        theirs = reference(input_ids=ids, attention_mask=mask, token_type_ids=types)
    real = mask.bool()
    assert torch.allclose(ours[real], theirs.last_hidden_state[real], atol=1e-4)


def test_pair_segments_do_not_see_each_other(
    backbone: MiniLM, tokenizer: WordPieceTokenizer
) -> None:
    """In a packed pair, the first record's embedding equals that record encoded alone:
    the block mask isolates the segments exactly."""
    a, b = "Acme red t-shirt size M", "Acme blue tee size L pack of 2"
    pair = tokenizer.pad([tokenizer.encode(a, b, max_len=32)], batch_size=1, seq_len=32)
    alone = tokenizer.pad([tokenizer.encode(a, max_len=32)], batch_size=1, seq_len=32)
    with torch.inference_mode():
        features = pair_features(backbone, *_tensors(pair))
        u_alone = sentence_embedding(backbone, *_tensors(alone))
    hidden = backbone.hidden_size
    assert features.shape == (1, 6 * hidden)
    assert torch.allclose(features[0, :hidden], u_alone[0], atol=1e-5)


def test_backbone_id_names_weights(backbone_files: BackboneFiles) -> None:
    """The id recorded with trained heads names the checkpoint and a digest of its bytes."""
    ident = backbone_id(backbone_files)
    assert ident.startswith("sentence-transformers/all-MiniLM-L6-v2@sha256:")
    assert len(ident.rsplit(":", 1)[1]) == 16
