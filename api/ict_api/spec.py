"""The ImageClassifierTraining spec: the contract between user, operator and trainer.

Field names are snake_case in Python and camelCase on the wire (YAML, JSON, the CRD).
Every field carries a description: it is what `kubectl explain ict.spec` and the docs show.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from ict_api.defaults import ARCHITECTURE_DEFAULTS, MAX_IMAGE_SIZE, defaults_for, unset_means

API_GROUP = "littledata.dev"
API_VERSION = "v1alpha1"
KIND = "ImageClassifierTraining"
PLURAL = "imageclassifiertrainings"
SHORT_NAME = "ict"

# Kubernetes quantity, e.g. "500m", "2", "8Gi".
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"


class SpecModel(BaseModel):
    """Base of every spec section: camelCase aliases, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=False,
        validate_default=True,
    )


class Strategy(StrEnum):
    """The three recipes of the blog post."""

    SCRATCH = "scratch"
    BOTTLENECK = "bottleneck"
    FINETUNE = "finetune"


class Backbone(StrEnum):
    """Pretrained convolutional bases from keras.applications."""

    VGG16 = "vgg16"
    MOBILENET = "mobilenet"
    MOBILENET_V2 = "mobilenet_v2"
    RESNET50 = "resnet50"
    EFFICIENTNETB0 = "efficientnetb0"


class Pooling(StrEnum):
    AVG = "avg"
    MAX = "max"
    FLATTEN = "flatten"


class Architecture(StrEnum):
    """The scratch convnets (ict_api.defaults.ARCHITECTURE_DEFAULTS gives their shapes)."""

    BLOG = "blog"
    WIDE = "wide"


class FillMode(StrEnum):
    NEAREST = "nearest"
    REFLECT = "reflect"
    WRAP = "wrap"
    CONSTANT = "constant"


class Optimizer(StrEnum):
    RMSPROP = "rmsprop"
    ADAM = "adam"
    ADAMW = "adamw"
    SGD = "sgd"


class ImageCache(StrEnum):
    MEMORY = "memory"
    DISK = "disk"


class Schedule(StrEnum):
    CONSTANT = "constant"
    COSINE = "cosine"


class MixedPrecision(StrEnum):
    AUTO = "auto"
    ON = "on"
    OFF = "off"


class Monitor(StrEnum):
    VAL_LOSS = "val_loss"
    VAL_ACCURACY = "val_accuracy"


class AddressingStyle(StrEnum):
    AUTO = "auto"
    PATH = "path"
    VIRTUAL = "virtual"


class DatasetSpec(SpecModel):
    uri: str = Field(
        min_length=1,
        description=(
            "Local path or s3://bucket/prefix of the images. Either it holds train/<class>/ and "
            "validation/<class>/ folders, or it holds the <class>/ folders directly and "
            "validationSplit carves the validation set out of them. Classes are the sorted "
            "folder names; folders that archivers and systems leave (__MACOSX, hidden ones) are "
            "never classes. Images are recognised by content, whatever their names: JPEG, PNG, "
            "BMP, GIF (first frame), WebP; other files are ignored and counted."
        ),
    )
    validation_split: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        description=(
            "Fraction of each class held out for validation (stratified, seeded by "
            "training.seed) when the dataset has no validation/ folder. Defaults to 0.2 then. "
            "Must be left unset when a validation/ folder exists."
        ),
    )


class StorageSpec(SpecModel):
    endpoint: str | None = Field(
        default=None,
        description=(
            "S3 endpoint URL, e.g. http://minio.minio:9000. Unset: boto3's usual lookup "
            "(AWS_ENDPOINT_URL, profile, AWS)."
        ),
    )
    region: str | None = Field(default=None, description="S3 region; unset: boto3's default.")
    addressing_style: AddressingStyle = Field(
        default=AddressingStyle.PATH,
        description="S3 addressing style; MinIO, Ceph and SeaweedFS need path (the default).",
    )
    credentials_secret: str | None = Field(
        default=None,
        max_length=253,
        description=(
            "Name of a Secret in the resource's namespace with AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY. Used by the operator; a local run reads the environment."
        ),
    )


class OutputSpec(SpecModel):
    uri: str = Field(
        default="ict-output",
        min_length=1,
        description="Local folder or s3://bucket/prefix that receives the model and reports.",
    )
    overwrite: bool = Field(
        default=False,
        description=(
            "Replace the results of a different training found at uri, and train again even "
            "when uri already holds this very training. Without it a different training is "
            "refused, so that nobody's results are lost by a typo, and an up-to-date output "
            "(same spec digest, same dataset content and weights, every artifact there) is not "
            "trained again: the run succeeds with the recorded results."
        ),
    )


class CacheSpec(SpecModel):
    enabled: bool = Field(default=True, description="Reuse bottleneck features between runs.")
    uri: str | None = Field(
        default=None,
        description=(
            "Where bottleneck features are kept: local folder or s3://bucket/prefix. Unset: "
            "$ICT_CACHE_DIR, else ~/.cache/ict for a local output, or .ict-cache/ in the "
            "output's bucket."
        ),
    )
    images: ImageCache = Field(
        default=ImageCache.MEMORY,
        description=(
            "Where decoded training and validation images are kept between epochs. memory: in "
            "RAM, about imageSize^2 x 3 bytes per image (1.35 GB for 20,000 images at 150 px). "
            "disk: one file per image under the local cache folder ($ICT_CACHE_DIR/images), "
            "keyed by the file's path, size, modification time and imageSize, kept for the "
            "next run; RAM then stays flat whatever the number of images."
        ),
    )


class ModelSpec(SpecModel):
    backbone: Backbone = Field(
        default=Backbone.VGG16,
        description="Pretrained base for bottleneck and finetune (ignored by scratch).",
    )
    alpha: float = Field(
        default=1.0,
        gt=0.0,
        le=1.4,
        description="Width multiplier of mobilenet and mobilenet_v2 (e.g. 0.25, 0.35, 1.0).",
    )
    weights: str = Field(
        default="imagenet",
        min_length=1,
        description=(
            "imagenet (downloaded by Keras; needs internet), none (random initialisation), or a "
            "local path or s3:// URI of a Keras weights file (.h5 or .weights.h5) for the "
            "backbone without its top."
        ),
    )
    image_size: int | None = Field(
        default=None,
        ge=32,
        le=MAX_IMAGE_SIZE,
        description="Side of the square input in pixels. " + unset_means("model.imageSize"),
    )
    feature_scales: list[Annotated[int, Field(ge=32, le=MAX_IMAGE_SIZE)]] | None = Field(
        default=None,
        max_length=4,
        description=(
            "Extra input sizes in px at which the backbone also sees each image, their pooled "
            "features concatenated with those at model.imageSize; e.g. [288] with imageSize "
            "224; [] for imageSize alone. Images are decoded at the largest size (the saved "
            "model's input) and resized down for the others. bottleneck and finetune only, "
            "with pooling avg or max. " + unset_means("model.featureScales")
        ),
    )
    pooling: Pooling | None = Field(
        default=None,
        description=(
            "How the last feature maps (the scratch convnet's or the backbone's) become one "
            "vector: avg (global average, small and robust), max, or flatten (the blog's; "
            "large features). " + unset_means("model.pooling")
        ),
    )
    dense_units: int | None = Field(
        default=None,
        ge=0,
        le=8192,
        description="Hidden units of the classifier head; 0: none. "
        + unset_means("model.denseUnits"),
    )
    dropout: float = Field(
        default=0.5, ge=0.0, lt=1.0, description="Dropout before the output layer."
    )
    architecture: Architecture = Field(
        default=Architecture.WIDE,
        description=(
            "The scratch convnet (ignored by bottleneck and finetune): blog, the blog's "
            "conv/relu/max-pool blocks of 32, 32 and 64 filters, flattened into 64 dense units; "
            "wide, four blocks of 32, 64, 128 and 128 filters with batch norm, into 128 dense "
            "units (0.89 on 2,000 cats-dogs images against the blog convnet's 0.79, "
            "bench/RESULTS.md). It sets scratchFilters, batchNorm, pooling and denseUnits "
            "where they are unset."
        ),
    )
    scratch_filters: list[Annotated[int, Field(ge=1, le=1024)]] | None = Field(
        default=None,
        min_length=1,
        max_length=8,
        description=(
            "Filters of each conv/relu/max-pool block of the scratch convnet. Unset: the "
            "architecture's."
        ),
    )
    batch_norm: bool | None = Field(
        default=None,
        description=(
            "Batch normalisation after each scratch convolution but the first (whose large "
            "maps would make it the costliest layer on a CPU). Unset: the architecture's (on "
            "for wide, off for blog)."
        ),
    )

    @property
    def input_size(self) -> int:
        """Side at which images are decoded and the saved model takes them: the largest of
        imageSize and featureScales (of a spec whose defaults are resolved)."""
        return max([self.image_size, *(self.feature_scales or ())])


class EarlyStoppingSpec(SpecModel):
    enabled: bool = Field(
        default=True, description="Stop a stage when the monitored metric stops improving."
    )
    monitor: Monitor = Field(
        default=Monitor.VAL_LOSS,
        description=(
            "Validation metric that chooses the best epoch (reported as best in metrics.json), "
            "and that decides between a fine-tuned model and the head it started from when "
            "both classify as many validation images right."
        ),
    )
    patience: int = Field(
        default=10,
        ge=1,
        le=1000,
        description=(
            "Epochs without improvement before a stage stops; large enough that a slow start "
            "is not cut short."
        ),
    )
    restore_best_weights: bool = Field(
        default=True,
        description=(
            "End each stage with the weights of its best epoch rather than its last, whether "
            "it stopped early or ran all its epochs."
        ),
    )


class TrainingSpec(SpecModel):
    epochs: int | None = Field(
        default=None,
        ge=1,
        le=10000,
        description=(
            "Epochs of the scratch model, or of the head for bottleneck and finetune, at most: "
            "early stopping may end the stage sooner. " + unset_means("training.epochs")
        ),
    )
    batch_size: int = Field(default=32, ge=1, le=4096, description="Images per step.")
    optimizer: Optimizer | None = Field(
        default=None, description="Optimizer. " + unset_means("training.optimizer")
    )
    learning_rate: float = Field(default=1e-3, gt=0.0, le=10.0, description="Learning rate.")
    weight_decay: float | None = Field(
        default=None,
        ge=0.0,
        lt=1.0,
        description=(
            "Decoupled weight decay of the optimizer (AdamW's, or the same decay applied by "
            "any other optimizer). " + unset_means("training.weightDecay")
        ),
    )
    schedule: Schedule | None = Field(
        default=None,
        description=(
            "Learning rate over the stage: constant keeps learningRate; cosine rises linearly "
            "from 0 to learningRate over warmupEpochs, then decays to 0 along a cosine by the "
            "last epoch. " + unset_means("training.schedule")
        ),
    )
    warmup_epochs: int = Field(
        default=2, ge=0, le=100, description="Epochs of linear warm-up of the cosine schedule."
    )
    label_smoothing: float | None = Field(
        default=None,
        ge=0.0,
        lt=1.0,
        description="Label smoothing of the cross-entropy loss. "
        + unset_means("training.labelSmoothing"),
    )
    seed: int = Field(
        default=1337, ge=0, le=2**31 - 1, description="Seed of shuffling, splits and weights."
    )
    early_stopping: EarlyStoppingSpec | None = Field(
        default=None,
        description=(
            "Early stopping and best-epoch selection of each stage (scratch's, the head's, the "
            "fine-tune's) on the validation split. " + unset_means("training.earlyStopping")
        ),
    )
    mixed_precision: MixedPrecision = Field(
        default=MixedPrecision.AUTO,
        description=(
            "auto: the fastest safe type of the machine: float16 compute on a GPU, bfloat16 on "
            "a CPU with bfloat16 instructions (AVX-512 BF16 or AMX; $ICT_CPU_BF16=1/0 overrides "
            "the detection), float32 elsewhere. on: always (bfloat16 on a CPU); off: float32. "
            "The output layer and the loss are float32 in every case."
        ),
    )


class AugmentationSpec(SpecModel):
    """The options of the blog's ImageDataGenerator, as Keras preprocessing layers."""

    enabled: bool = Field(
        default=True, description="Augment training images (never validation images)."
    )
    rotation_range: float = Field(
        default=20.0, ge=0.0, le=180.0, description="Largest random rotation, in degrees."
    )
    width_shift_range: float = Field(
        default=0.1, ge=0.0, lt=1.0, description="Largest horizontal shift, fraction of width."
    )
    height_shift_range: float = Field(
        default=0.1, ge=0.0, lt=1.0, description="Largest vertical shift, fraction of height."
    )
    shear_range: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description=(
            "Largest shear, as the displacement of one edge over the image side "
            "(0.2 is about 11 degrees, as the blog's 0.2)."
        ),
    )
    zoom_range: float = Field(
        default=0.2, ge=0.0, lt=1.0, description="Random zoom in [1 - z, 1 + z]."
    )
    horizontal_flip: bool = Field(default=True, description="Random left-right flips.")
    vertical_flip: bool = Field(default=False, description="Random up-down flips.")
    fill_mode: FillMode = Field(
        default=FillMode.NEAREST, description="How pixels outside the image are filled."
    )
    cval: float = Field(
        default=0.0, ge=0.0, le=255.0, description="Fill value when fillMode is constant."
    )
    feature_passes: int | None = Field(
        default=None,
        ge=0,
        le=20,
        description=(
            "Augmented passes of the training images through the frozen backbone (bottleneck, "
            "and finetune's head stage): the head trains on their features as well as on the "
            "images' own, all cached (the cache key holds these options, the passes and "
            "training.seed). Ignored by scratch, which augments every epoch. "
            + unset_means("augmentation.featurePasses")
        ),
    )
    rescale: float | None = Field(
        default=None,
        gt=0.0,
        description=(
            "Factor applied to raw pixels by the scratch model. Pretrained backbones use their "
            "own preprocessing, so it must stay unset for them. "
            + unset_means("augmentation.rescale")
        ),
    )


class FineTuneSpec(SpecModel):
    blocks: int = Field(
        default=1,
        ge=1,
        le=50,
        description="How many top blocks of the backbone to unfreeze (see docs for names).",
    )
    layers: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None,
        description=(
            "Layer-name prefixes to unfreeze instead of blocks, e.g. [block5_, block4_conv3]."
        ),
    )
    epochs: int = Field(
        default=30,
        ge=1,
        le=10000,
        description=(
            "Epochs of the fine-tune stage, at most (training.earlyStopping applies). A stage "
            "that ends with fewer validation images right than the head it started from (or as "
            "many and worse on earlyStopping.monitor) is discarded and the head is published."
        ),
    )
    optimizer: Optimizer = Field(default=Optimizer.SGD, description="Optimizer of the stage.")
    learning_rate: float = Field(
        default=1e-4, gt=0.0, le=1.0, description="Learning rate; keep it small."
    )
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0, description="SGD momentum.")
    schedule: Schedule = Field(
        default=Schedule.CONSTANT,
        description=(
            "Learning rate over the stage: constant keeps learningRate; cosine rises linearly "
            "from 0 to learningRate over warmupEpochs, then decays to 0 along a cosine by the "
            "stage's last epoch (measured on cats-dogs: same accuracy as constant, stopped "
            "sooner; bench/RESULTS.md)."
        ),
    )
    warmup_epochs: int = Field(
        default=1, ge=0, le=100, description="Epochs of linear warm-up of the cosine schedule."
    )


class Toleration(SpecModel):
    key: str | None = Field(default=None, description="Taint key; unset matches every key.")
    operator: str = Field(
        default="Equal", pattern="^(Equal|Exists)$", description="Equal or Exists."
    )
    value: str | None = Field(default=None, description="Taint value for Equal.")
    effect: str | None = Field(
        default=None,
        pattern="^(NoSchedule|PreferNoSchedule|NoExecute)$",
        description="Taint effect; unset matches every effect.",
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, description="How long a NoExecute taint is tolerated."
    )


class ResourcesSpec(SpecModel):
    gpus: int = Field(
        default=0,
        ge=0,
        le=16,
        description=(
            "GPUs of the trainer pod, requested as the operator's GPU resource "
            "(nvidia.com/gpu unless the operator is configured otherwise)."
        ),
    )
    cpu: str | None = Field(
        default=None,
        pattern=QUANTITY_PATTERN,
        description="CPU request and limit, e.g. 4 or 500m. Unset: the operator's default (2).",
    )
    memory: str | None = Field(
        default=None,
        pattern=QUANTITY_PATTERN,
        description="Memory request and limit, e.g. 8Gi. Unset: the operator's default (8Gi).",
    )


class SchedulingSpec(SpecModel):
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the trainer pod must match."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Taints the trainer pod tolerates."
    )
    queue_name: str | None = Field(
        default=None, description="Kueue LocalQueue; sets kueue.x-k8s.io/queue-name on the Job."
    )
    priority_class_name: str | None = Field(
        default=None, description="PriorityClass of the trainer pod."
    )


class RetrySpec(SpecModel):
    backoff_limit: int = Field(
        default=2, ge=0, le=20, description="Pod failures tolerated before the run fails."
    )
    active_deadline_seconds: int | None = Field(
        default=None, ge=60, description="Wall-clock limit of the whole run; unset: none."
    )


class ImageClassifierTrainingSpec(SpecModel):
    """What to train, on which images, and where the results go."""

    strategy: Strategy = Field(
        default=Strategy.FINETUNE,
        description=(
            "scratch: a small convnet trained from random weights with augmentation. "
            "bottleneck: a dense head on cached features of a frozen pretrained backbone. "
            "finetune: bottleneck, then the top block(s) of the backbone trained slowly."
        ),
    )
    dataset: DatasetSpec = Field(description="Where the labelled images are.")
    output: OutputSpec = Field(default_factory=OutputSpec, description="Where results go.")
    storage: StorageSpec = Field(
        default_factory=StorageSpec, description="How S3-compatible storage is reached."
    )
    cache: CacheSpec = Field(default_factory=CacheSpec, description="Bottleneck feature cache.")
    model: ModelSpec = Field(default_factory=ModelSpec, description="Network architecture.")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="Optimisation.")
    augmentation: AugmentationSpec = Field(
        default_factory=AugmentationSpec, description="Random transformations of training images."
    )
    fine_tune: FineTuneSpec = Field(
        default_factory=FineTuneSpec, description="The fine-tune stage (strategy finetune)."
    )
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec, description="Compute of the trainer pod."
    )
    scheduling: SchedulingSpec = Field(
        default_factory=SchedulingSpec, description="Where the trainer pod may run."
    )
    suspend: bool = Field(
        default=False, description="Hold the run (no pod); resuming continues from checkpoints."
    )
    retries: RetrySpec = Field(default_factory=RetrySpec, description="Failure handling.")

    @model_validator(mode="after")
    def _rescale_only_for_scratch(self) -> Self:
        if self.augmentation.rescale is not None and self.strategy is not Strategy.SCRATCH:
            raise ValueError(
                f"augmentation.rescale={self.augmentation.rescale!r} applies to the scratch "
                f"strategy only; strategy {self.strategy.value!r} uses the backbone's own "
                "preprocessing. Remove augmentation.rescale."
            )
        return self

    @model_validator(mode="after")
    def _scratch_image_outlasts_its_blocks(self) -> Self:
        if self.strategy is not Strategy.SCRATCH:
            return self
        model = self.model
        size = model.image_size or defaults_for("scratch")["model.imageSize"]
        filters = (
            model.scratch_filters
            or ARCHITECTURE_DEFAULTS[model.architecture.value]["model.scratchFilters"]
        )
        side = size
        for _ in filters:  # a 3x3 convolution without padding, then a 2x2 max-pool
            side = (side - 2) // 2
        if side < 1:
            smallest = 1
            for _ in filters:
                smallest = smallest * 2 + 2
            raise ValueError(
                f"model.imageSize {size} is too small for the {len(filters)} blocks of the "
                f"scratch convnet (filters {filters!r}): each block shrinks the side to "
                f"(side - 2) // 2, leaving nothing. Use model.imageSize >= {smallest}, or fewer "
                "blocks (model.scratchFilters, or model.architecture: blog)."
            )
        return self

    @model_validator(mode="after")
    def _feature_scales_fit(self) -> Self:
        scales = self.model.feature_scales
        if not scales:
            return self
        field = f"model.featureScales={scales!r}"
        if self.strategy is Strategy.SCRATCH:
            raise ValueError(
                f"{field} applies to the bottleneck and finetune strategies only; the scratch "
                "convnet sees each image at model.imageSize. Remove model.featureScales."
            )
        if self.model.pooling is Pooling.FLATTEN:
            raise ValueError(
                f"{field} needs model.pooling avg or max: flattened feature maps differ in "
                "width from one size to the next. Set model.pooling to avg or max."
            )
        image_size = self.model.image_size or defaults_for(self.strategy.value)["model.imageSize"]
        if len(set(scales)) != len(scales) or image_size in scales:
            raise ValueError(
                f"{field} repeats a size (model.imageSize is {image_size!r}): each scale adds "
                "the features of one more size. List each size once, imageSize not among them."
            )
        return self


class ObjectMeta(BaseModel):
    """The part of metadata a local run reads; the rest is kept as given."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(default="local", description="Name of the resource.")
    namespace: str | None = None


class ImageClassifierTraining(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_version: str = Field(alias="apiVersion", pattern=f"^{API_GROUP}/{API_VERSION}$")
    kind: str = Field(pattern=f"^{KIND}$")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ImageClassifierTrainingSpec
    status: dict | None = None
