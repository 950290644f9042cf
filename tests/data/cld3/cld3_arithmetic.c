/* CLD3's arithmetic for quantized embeddings, restated line for line in C so that tests can
 * compare rowquant with it: github.com/google/cld3 (Apache-2.0, Copyright 2016 Google Inc.) at
 * commit b48dc46,
 *   src/float16.h            Float16To32(f): the float32 whose bits are f << 16
 *   src/embedding_network.h  EmbeddingMatrix::get_embedding: *scale = Float16To32(quant_scales_[k])
 *   src/embedding_network.cc EmbeddingNetwork::ConcatEmbeddings: multiplier *= weight (for
 *                            continuous features), then for each value of the row
 *                            *concat_ptr += (static_cast<int>(*quant_weights) - 128) * multiplier;
 * Build without FMA contraction, as CLD3's default x86-64 builds run: cc -O2 -ffp-contract=off.
 *
 * stdin:  int32 rows, cols, n_bags; uint8 weights[rows * cols]; uint16 scales[rows];
 *         int32 bounds[n_bags + 1]; int32 ids[bounds[n_bags]]; float32 feature_weights[same]
 * stdout: float32 values[rows * cols] ((q - 128) * Float16To32(s), each value), then
 *         float32 bags[n_bags * cols] (each bag's sum from 0 as ConcatEmbeddings adds it) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float Float16To32(uint16_t f)
{
    const uint32_t bits = (uint32_t)f << 16;
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static void read_all(void *data, size_t size)
{
    if (size && fread(data, 1, size, stdin) != size) exit(2);
}

int main(void)
{
    int32_t header[3];
    read_all(header, sizeof header);
    const int32_t rows = header[0], cols = header[1], n_bags = header[2];
    uint8_t *weights = malloc((size_t)rows * cols + 1);
    uint16_t *scales = malloc(sizeof(uint16_t) * rows + 1);
    int32_t *bounds = malloc(sizeof(int32_t) * (n_bags + 1));
    read_all(weights, (size_t)rows * cols);
    read_all(scales, sizeof(uint16_t) * rows);
    read_all(bounds, sizeof(int32_t) * (n_bags + 1));
    const int32_t n_ids = bounds[n_bags];
    int32_t *ids = malloc(sizeof(int32_t) * n_ids + 1);
    float *feature_weights = malloc(sizeof(float) * n_ids + 1);
    read_all(ids, sizeof(int32_t) * n_ids);
    read_all(feature_weights, sizeof(float) * n_ids);
    for (int32_t r = 0; r < rows; r++)
        for (int32_t i = 0; i < cols; i++) {
            const float value = ((int)(weights[(size_t)r * cols + i]) - 128) * Float16To32(scales[r]);
            fwrite(&value, sizeof value, 1, stdout);
        }
    float *concat = malloc(sizeof(float) * cols + 1);
    for (int32_t b = 0; b < n_bags; b++) {
        for (int32_t i = 0; i < cols; i++) concat[i] = 0.0f;
        for (int32_t k = bounds[b]; k < bounds[b + 1]; k++) {
            float multiplier = Float16To32(scales[ids[k]]); /* get_embedding */
            multiplier *= feature_weights[k];               /* a continuous feature's weight */
            const uint8_t *quant_weights = weights + (size_t)ids[k] * cols;
            float *concat_ptr = concat;
            for (int i = 0; i < cols; ++i, ++quant_weights, ++concat_ptr)
                *concat_ptr += ((int)(*quant_weights) - 128) * multiplier;
        }
        fwrite(concat, sizeof(float), cols, stdout);
    }
    return 0;
}
