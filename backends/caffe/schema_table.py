"""The facts behind :mod:`.schema`: every Caffe message, field and enum with the
dialects that have it, in the line format documented there."""
from __future__ import annotations

_TABLE = r"""
# number  label  name  type  [=default]  [packed]  [@tags]   -- format: see module docstring
enum Phase: TRAIN=0 TEST=1

message BlobShape
  1     rep dim                        int64 packed

message BlobProto
  7     opt shape                      BlobShape
  5     rep data                       float packed
  6     rep diff                       float packed
  8     rep double_data                double packed
  9     rep double_diff                double packed
  1     opt num                        int32 =0
  2     opt channels                   int32 =0
  3     opt height                     int32 =0
  4     opt width                      int32 =0

message BlobProtoVector
  1     rep blobs                      BlobProto

message Datum
  1     opt channels                   int32
  2     opt height                     int32
  3     opt width                      int32
  4     opt data                       bytes
  5     opt label                      int32
  6     rep float_data                 float
  7     opt encoded                    bool =false

message FillerParameter
  enum VarianceNorm: FAN_IN=0 FAN_OUT=1 AVERAGE=2
  1     opt type                       string ="constant"
  2     opt value                      float =0
  3     opt min                        float =0
  4     opt max                        float =1
  5     opt mean                       float =0
  6     opt std                        float =1
  7     opt sparse                     int32 =-1
  8     opt variance_norm              VarianceNorm =FAN_IN

message NetParameter
  1     opt name                       string
  3     rep input                      string
  8     rep input_shape                BlobShape
  4     rep input_dim                  int32
  5     opt force_backward             bool =false
  6     opt state                      NetState
  7     opt debug_info                 bool =false
  100   rep layer                      LayerParameter
  2     rep layers                     V1LayerParameter

message SolverParameter
  enum SnapshotFormat: HDF5=0 BINARYPROTO=1
  enum SolverMode: CPU=0 GPU=1
  enum SolverType: SGD=0 NESTEROV=1 ADAGRAD=2 RMSPROP=3 ADADELTA=4 ADAM=5
  24    opt net                        string
  25    opt net_param                  NetParameter
  1     opt train_net                  string
  2     rep test_net                   string
  21    opt train_net_param            NetParameter
  22    rep test_net_param             NetParameter
  26    opt train_state                NetState
  27    rep test_state                 NetState
  41    opt eval_type                  string ="classification" @fork
  42    opt ap_version                 string ="Integral" @fork
  3     rep test_iter                  int32
  4     opt test_interval              int32 =0
  19    opt test_compute_loss          bool =false
  32    opt test_initialization        bool =true
  5     opt base_lr                    float
  6     opt display                    int32
  33    opt average_loss               int32 =1
  7     opt max_iter                   int32
  36    opt iter_size                  int32 =1
  8     opt lr_policy                  string
  9     opt gamma                      float
  10    opt power                      float
  11    opt momentum                   float
  12    opt weight_decay               float
  29    opt regularization_type        string ="L2"
  13    opt stepsize                   int32
  34    rep stepvalue                  int32
  35    opt clip_gradients             float =-1
  14    opt snapshot                   int32 =0
  15    opt snapshot_prefix            string
  16    opt snapshot_diff              bool =false
  37    opt snapshot_format            SnapshotFormat =BINARYPROTO
  17    opt solver_mode                SolverMode =GPU
  18    opt device_id                  int32 =0
  20    opt random_seed                int64 =-1
  40    opt type                       string ="SGD"
  31    opt delta                      float =1e-08
  39    opt momentum2                  float =0.999
  38    opt rms_decay                  float =0.99
  23    opt debug_info                 bool =false
  28    opt snapshot_after_train       bool =true
  30    opt solver_type                SolverType =SGD
  41    opt layer_wise_reduce          bool =true @1.0
  42    rep weights                    string @master

message SolverState
  1     opt iter                       int32
  2     opt learned_net                string
  3     rep history                    BlobProto
  4     opt current_step               int32 =0

message NetState
  1     opt phase                      Phase =TEST
  2     opt level                      int32 =0
  3     rep stage                      string

message NetStateRule
  1     opt phase                      Phase
  2     opt min_level                  int32
  3     opt max_level                  int32
  4     rep stage                      string
  5     rep not_stage                  string

message ParamSpec
  enum DimCheckMode: STRICT=0 PERMISSIVE=1
  1     opt name                       string
  2     opt share_mode                 DimCheckMode
  3     opt lr_mult                    float =1
  4     opt decay_mult                 float =1

message LayerParameter
  1     opt name                       string
  2     opt type                       string
  3     rep bottom                     string
  4     rep top                        string
  10    opt phase                      Phase
  5     rep loss_weight                float
  6     rep param                      ParamSpec
  7     rep blobs                      BlobProto
  11    rep propagate_down             bool
  8     rep include                    NetStateRule
  9     rep exclude                    NetStateRule
  100   opt transform_param            TransformationParameter
  101   opt loss_param                 LossParameter
  102   opt accuracy_param             AccuracyParameter
  200   opt annotated_data_param       AnnotatedDataParameter @fork
  103   opt argmax_param               ArgMaxParameter
  139   opt batch_norm_param           BatchNormParameter
  141   opt bias_param                 BiasParameter
  1111  opt bn_param                   BNParameter @fork
  148   opt clip_param                 ClipParameter @master
  104   opt concat_param               ConcatParameter
  105   opt contrastive_loss_param     ContrastiveLossParameter
  106   opt convolution_param          ConvolutionParameter
  144   opt crop_param                 CropParameter
  107   opt data_param                 DataParameter
  205   opt detection_evaluate_param   DetectionEvaluateParameter @fork
  204   opt detection_output_param     DetectionOutputParameter @fork
  108   opt dropout_param              DropoutParameter
  109   opt dummy_data_param           DummyDataParameter
  110   opt eltwise_param              EltwiseParameter
  140   opt elu_param                  ELUParameter
  137   opt embed_param                EmbedParameter
  111   opt exp_param                  ExpParameter
  135   opt flatten_param              FlattenParameter
  112   opt hdf5_data_param            HDF5DataParameter
  113   opt hdf5_output_param          HDF5OutputParameter
  114   opt hinge_loss_param           HingeLossParameter
  115   opt image_data_param           ImageDataParameter
  116   opt infogain_loss_param        InfogainLossParameter
  117   opt inner_product_param        InnerProductParameter
  143   opt input_param                InputParameter
  134   opt log_param                  LogParameter
  118   opt lrn_param                  LRNParameter
  119   opt memory_data_param          MemoryDataParameter
  201   opt multibox_loss_param        MultiBoxLossParameter @fork
  120   opt mvn_param                  MVNParameter
  206   opt norm_param                 NormalizeParameter @fork
  145   opt parameter_param            ParameterParameter
  202   opt permute_param              PermuteParameter @fork
  121   opt pooling_param              PoolingParameter
  122   opt power_param                PowerParameter
  131   opt prelu_param                PReLUParameter
  203   opt prior_box_param            PriorBoxParameter @fork
  130   opt python_param               PythonParameter
  146   opt recurrent_param            RecurrentParameter
  136   opt reduction_param            ReductionParameter
  123   opt relu_param                 ReLUParameter
  133   opt reshape_param              ReshapeParameter
  142   opt scale_param                ScaleParameter
  124   opt sigmoid_param              SigmoidParameter
  125   opt softmax_param              SoftmaxParameter
  132   opt spp_param                  SPPParameter
  126   opt slice_param                SliceParameter
  147   opt swish_param                SwishParameter @master
  127   opt tanh_param                 TanHParameter
  128   opt threshold_param            ThresholdParameter
  138   opt tile_param                 TileParameter
  207   opt video_data_param           VideoDataParameter @fork
  129   opt window_data_param          WindowDataParameter
  251   opt resize_param               ResizeParameter @fork
  250   opt inception_param            InceptionParameter @fork
  500   opt upsample_param             UpsampleParameter @fork
  501   opt hardsigmoid_param          HardSigmoidParameter @fork
  502   opt unsqueeze_param            UnsqueezeParameter @fork
  503   opt relu6_param                ReLU6Parameter @fork
  504   opt pad_param                  PadParameter @fork
  505   opt bilinear_interpolate_param BilinearInterpolateParameter @fork
  506   opt max_unpool_param           MaxUnPoolParameter @fork
  507   opt pixelshuffle_param         PixelShuffleParameter @fork
  1000  opt proposal_param             ProposalParameter @fork
  149   opt psroi_pooling_param        PSROIPoolingParameter @fork

message TransformationParameter
  1     opt scale                      float =1
  2     opt mirror                     bool =false
  3     opt crop_size                  uint32 =0
  11    opt crop_h                     uint32 =0 @fork
  12    opt crop_w                     uint32 =0 @fork
  4     opt mean_file                  string
  5     rep mean_value                 float
  6     opt force_color                bool =false
  7     opt force_gray                 bool =false
  8     opt old_resize_param           OldResizeParameter @fork
  9     opt noise_param                NoiseParameter @fork
  10    opt emit_constraint            EmitConstraint @fork

message LossParameter
  enum NormalizationMode: FULL=0 VALID=1 BATCH_SIZE=2 NONE=3
  1     opt ignore_label               int32
  3     opt normalization              NormalizationMode =VALID
  2     opt normalize                  bool

message AccuracyParameter
  1     opt top_k                      uint32 =1
  2     opt axis                       int32 =1
  3     opt ignore_label               int32

message ArgMaxParameter
  1     opt out_max_val                bool =false
  2     opt top_k                      uint32 =1
  3     opt axis                       int32

message ConcatParameter
  2     opt axis                       int32 =1
  1     opt concat_dim                 uint32 =1

message BatchNormParameter
  1     opt use_global_stats           bool
  2     opt moving_average_fraction    float =0.999
  3     opt eps                        float =1e-05
  7     opt weight_filler              FillerParameter @fork
  8     opt bias_filler                FillerParameter @fork
  9     opt use_alpha_beta             bool =false @fork
  10    opt do_all_reduce              bool =false @fork

message BiasParameter
  1     opt axis                       int32 =1
  2     opt num_axes                   int32 =1
  3     opt filler                     FillerParameter

message ContrastiveLossParameter
  1     opt margin                     float =1
  2     opt legacy_version             bool =false

message ConvolutionParameter
  enum Engine: DEFAULT=0 CAFFE=1 CUDNN=2
  1     opt num_output                 uint32
  2     opt bias_term                  bool =true
  3     rep pad                        uint32
  4     rep kernel_size                uint32
  6     rep stride                     uint32
  13    opt stride_h                   uint32 @1.0
  13    opt stride_h                   uint32 =1 @fork
  14    opt stride_w                   uint32 @1.0
  14    opt stride_w                   uint32 =1 @fork
  18    rep dilation                   uint32
  9     opt pad_h                      uint32 =0
  10    opt pad_w                      uint32 =0
  11    opt kernel_h                   uint32
  12    opt kernel_w                   uint32
  5     opt group                      uint32 =1
  51    opt width_group                uint32 =1 @fork
  52    opt height_group               uint32 =1 @fork
  7     opt weight_filler              FillerParameter
  8     opt bias_filler                FillerParameter
  15    opt engine                     Engine =DEFAULT
  16    opt axis                       int32 =1
  17    opt force_nd_im2col            bool =false

message CropParameter
  1     opt axis                       int32 =2
  2     rep offset                     uint32

message DataParameter
  enum DB: LEVELDB=0 LMDB=1
  1     opt source                     string
  4     opt batch_size                 uint32
  7     opt rand_skip                  uint32 =0
  8     opt backend                    DB =LEVELDB
  2     opt scale                      float =1
  3     opt mean_file                  string
  5     opt crop_size                  uint32 =0
  6     opt mirror                     bool =false
  9     opt force_encoded_color        bool =false
  10    opt prefetch                   uint32 =4

message DropoutParameter
  1     opt dropout_ratio              float =0.5

message DummyDataParameter
  1     rep data_filler                FillerParameter
  6     rep shape                      BlobShape
  2     rep num                        uint32
  3     rep channels                   uint32
  4     rep height                     uint32
  5     rep width                      uint32

message EltwiseParameter
  enum EltwiseOp: PROD=0 SUM=1 MAX=2
  1     opt operation                  EltwiseOp =SUM
  2     rep coeff                      float
  3     opt stable_prod_grad           bool =true

message ELUParameter
  1     opt alpha                      float =1

message EmbedParameter
  1     opt num_output                 uint32
  2     opt input_dim                  uint32
  3     opt bias_term                  bool =true
  4     opt weight_filler              FillerParameter
  5     opt bias_filler                FillerParameter

message ExpParameter
  1     opt base                       float =-1
  2     opt scale                      float =1
  3     opt shift                      float =0

message FlattenParameter
  1     opt axis                       int32 =1
  2     opt end_axis                   int32 =-1

message HDF5DataParameter
  1     opt source                     string
  2     opt batch_size                 uint32
  3     opt shuffle                    bool =false

message HDF5OutputParameter
  1     opt file_name                  string

message HingeLossParameter
  enum Norm: L1=1 L2=2
  1     opt norm                       Norm =L1

message ImageDataParameter
  1     opt source                     string
  4     opt batch_size                 uint32 =1
  7     opt rand_skip                  uint32 =0
  8     opt shuffle                    bool =false
  9     opt new_height                 uint32 =0
  10    opt new_width                  uint32 =0
  11    opt is_color                   bool =true
  2     opt scale                      float =1
  3     opt mean_file                  string
  5     opt crop_size                  uint32 =0
  6     opt mirror                     bool =false
  12    opt root_folder                string =""

message InfogainLossParameter
  1     opt source                     string
  2     opt axis                       int32 =1 @1.0

message InnerProductParameter
  1     opt num_output                 uint32
  2     opt bias_term                  bool =true
  3     opt weight_filler              FillerParameter
  4     opt bias_filler                FillerParameter
  5     opt axis                       int32 =1
  6     opt transpose                  bool =false

message InputParameter
  1     rep shape                      BlobShape

message LogParameter
  1     opt base                       float =-1
  2     opt scale                      float =1
  3     opt shift                      float =0

message LRNParameter
  enum NormRegion: ACROSS_CHANNELS=0 WITHIN_CHANNEL=1
  enum Engine: DEFAULT=0 CAFFE=1 CUDNN=2
  1     opt local_size                 uint32 =5
  2     opt alpha                      float =1
  3     opt beta                       float =0.75
  4     opt norm_region                NormRegion =ACROSS_CHANNELS
  5     opt k                          float =1
  6     opt engine                     Engine =DEFAULT

message MemoryDataParameter
  1     opt batch_size                 uint32
  2     opt channels                   uint32
  3     opt height                     uint32
  4     opt width                      uint32

message MVNParameter
  1     opt normalize_variance         bool =true
  2     opt across_channels            bool =false
  3     opt eps                        float =1e-09

message ParameterParameter
  1     opt shape                      BlobShape

message PoolingParameter
  enum PoolMethod: MAX=0 AVE=1 STOCHASTIC=2
  enum Engine: DEFAULT=0 CAFFE=1 CUDNN=2
  enum RoundMode @master: CEIL=0 FLOOR=1
  1     opt pool                       PoolMethod =MAX
  4     opt pad                        uint32 =0
  9     opt pad_h                      uint32 =0
  10    opt pad_w                      uint32 =0
  2     opt kernel_size                uint32
  5     opt kernel_h                   uint32
  6     opt kernel_w                   uint32
  3     opt stride                     uint32 =1
  7     opt stride_h                   uint32
  8     opt stride_w                   uint32
  11    opt engine                     Engine =DEFAULT
  12    opt global_pooling             bool =false
  13    opt ceil_mode                  bool =true @ceil+fork
  13    opt round_mode                 RoundMode =CEIL @master

message PowerParameter
  1     opt power                      float =1
  2     opt scale                      float =1
  3     opt shift                      float =0

message PythonParameter
  1     opt module                     string
  2     opt layer                      string
  3     opt param_str                  string =""
  4     opt share_in_parallel          bool =false

message RecurrentParameter
  1     opt num_output                 uint32 =0
  2     opt weight_filler              FillerParameter
  3     opt bias_filler                FillerParameter
  4     opt debug_info                 bool =false
  5     opt expose_hidden              bool =false

message ReductionParameter
  enum ReductionOp: SUM=1 ASUM=2 SUMSQ=3 MEAN=4
  1     opt operation                  ReductionOp =SUM
  2     opt axis                       int32 =0
  3     opt coeff                      float =1

message ReLUParameter
  enum Engine: DEFAULT=0 CAFFE=1 CUDNN=2
  1     opt negative_slope             float =0
  2     opt engine                     Engine =DEFAULT

message ReshapeParameter
  1     opt shape                      BlobShape
  2     opt axis                       int32 =0
  3     opt num_axes                   int32 =-1

message ScaleParameter
  1     opt axis                       int32 =1
  2     opt num_axes                   int32 =1
  3     opt filler                     FillerParameter
  4     opt bias_term                  bool =false
  5     opt bias_filler                FillerParameter

message SigmoidParameter
  enum Engine: DEFAULT=0 CAFFE=1 CUDNN=2
  1     opt engine                     Engine =DEFAULT

message SliceParameter
  3     opt axis                       int32 =1
  2     rep slice_point                uint32
  1     opt slice_dim                  uint32 =1

message SoftmaxParameter
  enum Engine: DEFAULT=0 CAFFE=1 CUDNN=2
  1     opt engine                     Engine =DEFAULT
  2     opt axis                       int32 =1

message TanHParameter
  enum Engine: DEFAULT=0 CAFFE=1 CUDNN=2
  1     opt engine                     Engine =DEFAULT

message TileParameter
  1     opt axis                       int32 =1
  2     opt tiles                      int32

message ThresholdParameter
  1     opt threshold                  float =0

message WindowDataParameter
  1     opt source                     string
  2     opt scale                      float =1
  3     opt mean_file                  string
  4     opt batch_size                 uint32
  5     opt crop_size                  uint32 =0
  6     opt mirror                     bool =false
  7     opt fg_threshold               float =0.5
  8     opt bg_threshold               float =0.5
  9     opt fg_fraction                float =0.25
  10    opt context_pad                uint32 =0
  11    opt crop_mode                  string ="warp"
  12    opt cache_images               bool =false
  13    opt root_folder                string =""

message SPPParameter
  enum PoolMethod: MAX=0 AVE=1 STOCHASTIC=2
  enum Engine: DEFAULT=0 CAFFE=1 CUDNN=2
  1     opt pyramid_height             uint32
  2     opt pool                       PoolMethod =MAX
  6     opt engine                     Engine =DEFAULT

message V1LayerParameter
  enum LayerType:
      NONE=0 ABSVAL=35 ACCURACY=1 ARGMAX=30 BNLL=2 CONCAT=3 CONTRASTIVE_LOSS=37
      CONVOLUTION=4 DATA=5 DECONVOLUTION=39 DROPOUT=6 DUMMY_DATA=32 EUCLIDEAN_LOSS=7
      ELTWISE=25 EXP=38 FLATTEN=8 HDF5_DATA=9 HDF5_OUTPUT=10 HINGE_LOSS=28 IM2COL=11
      IMAGE_DATA=12 INFOGAIN_LOSS=13 INNER_PRODUCT=14 LRN=15 MEMORY_DATA=29
      MULTINOMIAL_LOGISTIC_LOSS=16 MVN=34 POOLING=17 POWER=26 RELU=18 SIGMOID=19
      SIGMOID_CROSS_ENTROPY_LOSS=27 SILENCE=36 SOFTMAX=20 SOFTMAX_LOSS=21 SPLIT=22
      SLICE=33 TANH=23 WINDOW_DATA=24 THRESHOLD=31
  enum DimCheckMode: STRICT=0 PERMISSIVE=1
  2     rep bottom                     string
  3     rep top                        string
  4     opt name                       string
  32    rep include                    NetStateRule
  33    rep exclude                    NetStateRule
  5     opt type                       LayerType
  6     rep blobs                      BlobProto
  1001  rep param                      string
  1002  rep blob_share_mode            DimCheckMode
  7     rep blobs_lr                   float
  8     rep weight_decay               float
  35    rep loss_weight                float
  27    opt accuracy_param             AccuracyParameter
  23    opt argmax_param               ArgMaxParameter
  211   opt bn_param                   BNParameter @fork
  9     opt concat_param               ConcatParameter
  40    opt contrastive_loss_param     ContrastiveLossParameter
  10    opt convolution_param          ConvolutionParameter
  11    opt data_param                 DataParameter
  12    opt dropout_param              DropoutParameter
  26    opt dummy_data_param           DummyDataParameter
  24    opt eltwise_param              EltwiseParameter
  41    opt exp_param                  ExpParameter
  13    opt hdf5_data_param            HDF5DataParameter
  14    opt hdf5_output_param          HDF5OutputParameter
  29    opt hinge_loss_param           HingeLossParameter
  15    opt image_data_param           ImageDataParameter
  16    opt infogain_loss_param        InfogainLossParameter
  17    opt inner_product_param        InnerProductParameter
  18    opt lrn_param                  LRNParameter
  22    opt memory_data_param          MemoryDataParameter
  34    opt mvn_param                  MVNParameter
  19    opt pooling_param              PoolingParameter
  21    opt power_param                PowerParameter
  30    opt relu_param                 ReLUParameter
  38    opt sigmoid_param              SigmoidParameter
  39    opt softmax_param              SoftmaxParameter
  31    opt slice_param                SliceParameter
  37    opt tanh_param                 TanHParameter
  25    opt threshold_param            ThresholdParameter
  20    opt window_data_param          WindowDataParameter
  36    opt transform_param            TransformationParameter
  42    opt loss_param                 LossParameter
  139   opt batch_norm_param           BatchNormParameter @fork
  1     opt layer                      V0LayerParameter

message V0LayerParameter
  enum PoolMethod: MAX=0 AVE=1 STOCHASTIC=2
  1     opt name                       string
  2     opt type                       string
  3     opt num_output                 uint32
  4     opt biasterm                   bool =true
  5     opt weight_filler              FillerParameter
  6     opt bias_filler                FillerParameter
  7     opt pad                        uint32 =0
  8     opt kernelsize                 uint32
  9     opt group                      uint32 =1
  10    opt stride                     uint32 =1
  11    opt pool                       PoolMethod =MAX
  12    opt dropout_ratio              float =0.5
  13    opt local_size                 uint32 =5
  14    opt alpha                      float =1
  15    opt beta                       float =0.75
  22    opt k                          float =1
  16    opt source                     string
  17    opt scale                      float =1
  18    opt meanfile                   string
  19    opt batchsize                  uint32
  20    opt cropsize                   uint32 =0
  21    opt mirror                     bool =false
  50    rep blobs                      BlobProto
  51    rep blobs_lr                   float
  52    rep weight_decay               float
  53    opt rand_skip                  uint32 =0
  54    opt det_fg_threshold           float =0.5
  55    opt det_bg_threshold           float =0.5
  56    opt det_fg_fraction            float =0.25
  58    opt det_context_pad            uint32 =0
  59    opt det_crop_mode              string ="warp"
  60    opt new_num                    int32 =0
  61    opt new_channels               int32 =0
  62    opt new_height                 int32 =0
  63    opt new_width                  int32 =0
  64    opt shuffle_images             bool =false
  65    opt concat_dim                 uint32 =1
  1001  opt hdf5_output_param          HDF5OutputParameter

message PReLUParameter
  1     opt filler                     FillerParameter
  2     opt channel_shared             bool =false

# ---- BVLC master additions after 1.0 ----

message ClipParameter @master
  1     req min                        float
  2     req max                        float

message SwishParameter @master
  1     opt beta                       float =1

# ---- brocolli-caffe 9.0.2 fork only (SSD-derived and its own layers) ----

message LabelMapItem @fork
  1     opt name                       string
  2     opt label                      int32
  3     opt display_name               string

message LabelMap @fork
  1     rep item                       LabelMapItem

message Sampler @fork
  1     opt min_scale                  float =1
  2     opt max_scale                  float =1
  3     opt min_aspect_ratio           float =1
  4     opt max_aspect_ratio           float =1

message SampleConstraint @fork
  1     opt min_jaccard_overlap        float
  2     opt max_jaccard_overlap        float
  3     opt min_sample_coverage        float
  4     opt max_sample_coverage        float
  5     opt min_object_coverage        float
  6     opt max_object_coverage        float

message BatchSampler @fork
  1     opt use_original_image         bool =true
  2     opt sampler                    Sampler
  3     opt sample_constraint          SampleConstraint
  4     opt max_sample                 uint32
  5     opt max_trials                 uint32 =100

message EmitConstraint @fork
  enum EmitType: CENTER=0 MIN_OVERLAP=1
  1     opt emit_type                  EmitType =CENTER
  2     opt emit_overlap               float

message NormalizedBBox @fork
  1     opt xmin                       float
  2     opt ymin                       float
  3     opt xmax                       float
  4     opt ymax                       float
  5     opt label                      int32
  6     opt difficult                  bool
  7     opt score                      float
  8     opt size                       float

message Annotation @fork
  1     opt instance_id                int32 =0
  2     opt bbox                       NormalizedBBox

message AnnotationGroup @fork
  1     opt group_label                int32
  2     rep annotation                 Annotation

message AnnotatedDatum @fork
  enum AnnotationType: BBOX=0
  1     opt datum                      Datum
  2     opt type                       AnnotationType
  3     rep annotation_group           AnnotationGroup

message ProposalParameter @fork
  1     opt feat_stride                uint32 =16
  2     opt base_size                  uint32 =16
  3     opt min_size                   uint32 =16
  4     rep ratio                      float
  5     rep scale                      float
  6     opt pre_nms_topn               uint32 =6000
  7     opt post_nms_topn              uint32 =300
  8     opt nms_thresh                 float =0.7

message PSROIPoolingParameter @fork
  1     req spatial_scale              float
  2     req output_dim                 int32
  3     req group_size                 int32

message OldResizeParameter @fork
  enum Resize_mode: WARP=1 FIT_SMALL_SIZE=2 FIT_LARGE_SIZE_AND_PAD=3
  enum Pad_mode: CONSTANT=1 MIRRORED=2 REPEAT_NEAREST=3
  enum Interp_mode: LINEAR=1 AREA=2 NEAREST=3 CUBIC=4 LANCZOS4=5
  1     opt prob                       float =1
  2     opt resize_mode                Resize_mode =WARP
  3     opt height                     uint32 =0
  4     opt width                      uint32 =0
  5     opt pad_mode                   Pad_mode =CONSTANT
  6     rep pad_value                  float
  7     rep interp_mode                Interp_mode

message SaltPepperParameter @fork
  1     opt fraction                   float =0
  2     rep value                      float

message NoiseParameter @fork
  1     opt prob                       float =0
  2     opt hist_eq                    bool =false
  3     opt inverse                    bool =false
  4     opt decolorize                 bool =false
  5     opt gauss_blur                 bool =false
  6     opt jpeg                       float =-1
  7     opt posterize                  bool =false
  8     opt erode                      bool =false
  9     opt saltpepper                 bool =false
  10    opt saltpepper_param           SaltPepperParameter
  11    opt clahe                      bool =false
  12    opt convert_to_hsv             bool =false
  13    opt convert_to_lab             bool =false

message BNParameter @fork
  enum Engine: DEFAULT=0 CAFFE=1 CUDNN=2
  1     opt slope_filler               FillerParameter
  2     opt bias_filler                FillerParameter
  3     opt momentum                   float =0.9
  4     opt eps                        float =1e-05
  5     opt frozen                     bool =false
  6     opt engine                     Engine =DEFAULT

message AnnotatedDataParameter @fork
  1     rep batch_sampler              BatchSampler
  2     opt label_map_file             string

message DetectionEvaluateParameter @fork
  1     opt num_classes                uint32
  2     opt background_label_id        uint32 =0
  3     opt overlap_threshold          float =0.5
  4     opt evaluate_difficult_gt      bool =true
  5     opt name_size_file             string

message NonMaximumSuppressionParameter @fork
  1     opt nms_threshold              float =0.3
  2     opt top_k                      int32
  3     opt eta                        float =1

message SaveOutputParameter @fork
  1     opt output_directory           string
  2     opt output_name_prefix         string
  3     opt output_format              string
  4     opt label_map_file             string
  5     opt name_size_file             string
  6     opt num_test_image             uint32

message DetectionOutputParameter @fork
  1     opt num_classes                uint32
  2     opt share_location             bool =true
  3     opt background_label_id        int32 =0
  4     opt nms_param                  NonMaximumSuppressionParameter
  5     opt save_output_param          SaveOutputParameter
  6     opt code_type                  PriorBoxParameter.CodeType =CORNER
  8     opt variance_encoded_in_target bool =false
  7     opt keep_top_k                 int32 =-1
  9     opt confidence_threshold       float
  10    opt visualize                  bool =false
  11    opt visualize_threshold        float
  12    rep thresholds                 float
  13    opt save_file                  string

message MultiBoxLossParameter @fork
  enum LocLossType: L2=0 SMOOTH_L1=1
  enum ConfLossType: SOFTMAX=0 LOGISTIC=1
  enum MatchType: BIPARTITE=0 PER_PREDICTION=1
  enum MiningType: NONE=0 MAX_NEGATIVE=1 HARD_EXAMPLE=2
  1     opt loc_loss_type              LocLossType =SMOOTH_L1
  2     opt conf_loss_type             ConfLossType =SOFTMAX
  3     opt loc_weight                 float =1
  4     opt num_classes                uint32
  5     opt share_location             bool =true
  6     opt match_type                 MatchType =PER_PREDICTION
  7     opt overlap_threshold          float =0.5
  8     opt use_prior_for_matching     bool =true
  9     opt background_label_id        uint32 =0
  10    opt use_difficult_gt           bool =true
  11    opt do_neg_mining              bool
  12    opt neg_pos_ratio              float =3
  13    opt neg_overlap                float =0.5
  14    opt code_type                  PriorBoxParameter.CodeType =CORNER
  16    opt encode_variance_in_target  bool =false
  17    opt map_object_to_agnostic     bool =false
  18    opt ignore_cross_boundary_bbox bool =false
  19    opt bp_inside                  bool =false
  20    opt mining_type                MiningType =MAX_NEGATIVE
  21    opt nms_param                  NonMaximumSuppressionParameter
  22    opt sample_size                int32 =64
  23    opt use_prior_for_nms          bool =false

message NormalizeParameter @fork
  1     opt across_spatial             bool =true
  2     opt scale_filler               FillerParameter
  3     opt channel_shared             bool =true
  4     opt eps                        float =1e-10

message PermuteParameter @fork
  1     rep order                      uint32

message PriorBoxParameter @fork
  enum CodeType: CORNER=1 CENTER_SIZE=2 CORNER_SIZE=3
  1     rep min_size                   float
  2     rep max_size                   float
  3     rep aspect_ratio               float
  4     opt flip                       bool =true
  5     opt clip                       bool =true
  6     rep variance                   float
  7     opt img_size                   uint32
  8     opt img_h                      uint32
  9     opt img_w                      uint32
  10    opt step                       float
  11    opt step_h                     float
  12    opt step_w                     float
  13    opt offset                     float =0.5

message VideoDataParameter @fork
  enum VideoType: WEBCAM=0 VIDEO=1
  1     opt video_type                 VideoType =WEBCAM
  2     opt device_id                  int32 =0
  3     opt video_file                 string

message InceptionColumnParameter @fork
  1     rep convolution_param          ConvolutionParameter
  2     opt pooling_param              PoolingParameter
  3     opt column_name                string

message InceptionParameter @fork
  1     opt relu_param                 ReLUParameter
  2     opt weight_filler              FillerParameter
  3     opt bias_filler                FillerParameter
  5     opt need_relu                  bool =true
  6     opt relu_at_top                bool =true
  7     rep inception_column           InceptionColumnParameter

message ResizeParameter @fork
  1     opt height                     uint32
  2     opt width                      uint32
  3     opt is_pyramid_test            bool =false
  4     opt out_height_scale           float
  5     opt out_width_scale            float

message UpsampleParameter @fork
  1     opt scale                      int32 =1
  2     opt dims_num                   int32 =4

message HardSigmoidParameter @fork
  1     opt alpha                      float =0.2
  2     opt beta                       float =0.5

message UnsqueezeParameter @fork
  1     req dim                        int32

message ReLU6Parameter @fork
  1     opt negative_slope             float =0
  2     opt threshold                  float =6

message PadParameter @fork
  enum PadType: CONSTANT=0 REPLICATE=1 REFLECT=2
  1     opt pad_type                   PadType =CONSTANT
  2     opt pad_u                      int32 =0
  3     opt pad_d                      int32 =0
  4     opt pad_l                      int32 =0
  5     opt pad_r                      int32 =0
  6     opt pad_value                  float =0

message BilinearInterpolateParameter @fork
  1     opt dst_h                      int32
  2     opt dst_w                      int32
  3     opt scale_factor               float =1
  4     opt align_corners              bool =true

message MaxUnPoolParameter @fork
  1     opt dst_h                      uint32
  2     opt dst_w                      uint32

message PixelShuffleParameter @fork
  1     req upscale_factor             int32
"""
