"""The benchmark set: what ``python bench/run_all.py`` runs on a CPU, and what ``bash bench/gpu.sh`` adds.

Each CPU bench: its script and arguments, and the same shrunk for ``run_all.py --quick``
(which checks that the scripts run; its numbers are not measurements).
"""

SUITE = {
    "pretrain_tiny": (["pretrain_speed.py", "--size", "tiny", "--steps", "10"],
                      ["pretrain_speed.py", "--size", "tiny", "--steps", "1", "--warmup", "1", "--rows", "600"]),
    "pretrain_base": (["pretrain_speed.py", "--size", "base", "--steps", "4"],
                      ["pretrain_speed.py", "--size", "base", "--steps", "1", "--warmup", "0", "--batch", "2",
                       "--datasets", "full", "--rows", "300"]),
    "finetune_tiny": (["finetune_speed.py", "--size", "tiny"],
                      ["finetune_speed.py", "--size", "tiny", "--rows", "160", "--warmup", "1", "--repeats", "1"]),
    "finetune_base": (["finetune_speed.py", "--size", "base", "--rows", "640", "--threads", "2"],
                      ["finetune_speed.py", "--size", "base", "--rows", "64", "--batch", "16", "--warmup", "1",
                       "--repeats", "1"]),
    # hardware.compile=true vs eager, both sides, fp32; inductor's compile times on a cold cache are most of their time
    "pretrain_tiny_compile": (["pretrain_speed.py", "--size", "tiny", "--steps", "10", "--warmup", "3",
                               "--precisions", "fp32", "--compile"],
                              ["pretrain_speed.py", "--size", "tiny", "--steps", "1", "--warmup", "2", "--rows", "600",
                               "--precisions", "fp32", "--datasets", "full", "--compile"]),
    "pretrain_base_compile": (["pretrain_speed.py", "--size", "base", "--steps", "4", "--warmup", "2",
                               "--precisions", "fp32", "--datasets", "full", "--compile"],
                              ["pretrain_speed.py", "--size", "base", "--steps", "1", "--warmup", "2", "--batch", "2",
                               "--precisions", "fp32", "--datasets", "full", "--rows", "300", "--compile"]),
    "finetune_tiny_compile": (["finetune_speed.py", "--size", "tiny", "--rows", "960", "--warmup", "4", "--compile"],
                              ["finetune_speed.py", "--size", "tiny", "--rows", "160", "--warmup", "3", "--compile"]),
    "data_pipeline": (["data_pipeline.py"], ["data_pipeline.py", "--batches", "5"]),
    "preprocess": (["preprocess_speed.py"], ["preprocess_speed.py", "--processes", "1"]),
    "pretrain_memory": (["pretrain_memory.py", "--variants", "--steps", "4"],
                        ["pretrain_memory.py", "--size", "tiny", "--steps", "1", "--times", "2"]),
    "finetune_padding": (["finetune_padding.py"], ["finetune_padding.py", "--rows", "160"]),
    "encoders": (["encoder_speed.py"], ["encoder_speed.py", "--rows", "256"]),
    "generation": (["generate_speed.py"], ["generate_speed.py", "--new-tokens", "8", "--repeats", "1"]),
    "seq2seq_generation": (["generation_speed.py"],
                           ["generation_speed.py", "--new-tokens", "4", "--repeats", "1", "--batches", "1"]),
    # Best of 7: with best of 3, the same code measured beam 4 at 1.03x and 1.15x of transformers an hour apart.
    "seq2seq": (["seq2seq_speed.py", "--repeats", "7"],
                ["seq2seq_speed.py", "--steps", "1", "--warmup", "0", "--gen-rows", "4", "--new-tokens", "4",
                 "--repeats", "1"]),
    "distributed": (["distributed_scaling.py"], ["distributed_scaling.py", "--steps", "4"]),
}

# Benches that need a GPU (bench/gpu.sh), by the name their script records them under.
GPU = {
    "pretrain_base_cuda": "GPU pre-training, `size=base`, bf16, batch 32, seq 128: tokens/s and MFU, vs transformers",
    "finetune_base_cuda": "GPU fine-tuning and inference, `size=base`, bf16, vs transformers",
    "seq2seq_cuda": "GPU encoder-decoder training and generation, random BART (d_model 256), fp32, vs transformers",
}
