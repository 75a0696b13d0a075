"""Graph (non-sequential) 3D CNNs in plain PyTorch, laid out as their public
originals so their state_dicts carry the same names, and their ONNX exports.

    import torch_graph_models as gm
    model = gm.resnet18(num_classes=3)                       # MONAI layout
    gm.randomize_bn(model, torch.randn(2, 1, 64, 64, 64))    # eval BN is not the identity
    ops = gm.export_onnx(model, "r18.onnx", (1, 64, 64, 64))  # checked; returns the op-type counts

Models (no MONAI here: the classes are written out, module for module):
  ResNet     monai.networks.nets.resnet.ResNet with ResNetBlock (basic) blocks,
             shortcut 'B' (1x1x1 conv with bias + BatchNorm3d downsample), MaxPool3d(3, 2, 1),
             AdaptiveAvgPool3d((1, 1, 1)), x.view(N, -1), Linear fc.  resnet10 / resnet18
             take widen_factor (MONAI's width multiplier) for small test variants.
             MONAI's default conv1_t_stride is 1; the graph-model tests use 2.
  DenseNet   monai.networks.nets.densenet.DenseNet: features (conv0 k7 s2 p3, norm0, relu0,
             pool0 MaxPool3d(3, 2, 1), denseblockI of denselayerJ.layers (norm1 relu1 conv1 1x1x1
             norm2 relu2 conv2 3x3x3, then torch.cat([x, new], 1)), transitionI (norm relu
             conv 1x1x1, AvgPool3d(2, 2)), norm5), class_layers (relu, pool
             AdaptiveAvgPool3d(1), flatten, out Linear).  small_densenet() is a small default.
  SFCN       Peng et al. 2021, "Accurate brain age prediction with lightweight deep neural
             networks" (UKBiobank_deep_pretrain, dp_model/model_files/sfcn.py): channels
             [32, 64, 128, 256, 256, 64], 40 outputs (age bins), 2,952,936 parameters.  Input
             1x160x192x160 (the UK Biobank T1 crop at 1 mm); the classifier's AvgPool3d([5, 6, 5])
             needs the 5x6x5 maps of exactly that grid (any D, H, W in [160, 192) x [192, 224) x
             [160, 192)).  forward returns [log_softmax(x, dim=1)] with x of shape (N, 40, 1, 1, 1),
             a one-element list as the original.
  notebook   tools/neurofv_torch.py's "notebook" preset as an nn.Sequential (input 1x96x114x96).

Command line (prints parameter counts and the op types of every export):
    python3 tools/torch_graph_models.py [--out DIR] [--quick]
"""
import argparse
import collections
import os
import sys
import time
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import neurofv_torch as nt  # noqa: E402


# ---- MONAI ResNet -------------------------------------------------------------------

def get_inplanes():
    return [64, 128, 256, 512]


class ResNetBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, spatial_dims=3, stride=1, downsample=None):
        super().__init__()
        assert spatial_dims == 3
        self.conv1 = nn.Conv3d(in_planes, planes, kernel_size=3, padding=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        residual = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        out = self.relu(out)
        return out


class ResNet(nn.Module):
    """MONAI's ResNet for spatial_dims=3 with basic blocks and shortcut 'B'."""

    def __init__(self, block, layers, block_inplanes, spatial_dims=3, n_input_channels=3, conv1_t_size=7,
                 conv1_t_stride=1, no_max_pool=False, shortcut_type="B", widen_factor=1.0, num_classes=400,
                 feed_forward=True, bias_downsample=True):
        super().__init__()
        if spatial_dims != 3 or shortcut_type != "B" or block is not ResNetBlock:
            raise ValueError("only spatial_dims=3, ResNetBlock and shortcut_type 'B' are written out here")
        block_inplanes = [int(x * widen_factor) for x in block_inplanes]
        self.in_planes = block_inplanes[0]
        self.no_max_pool = no_max_pool
        self.bias_downsample = bias_downsample
        k = (conv1_t_size,) * 3 if isinstance(conv1_t_size, int) else tuple(conv1_t_size)
        s = (conv1_t_stride,) * 3 if isinstance(conv1_t_stride, int) else tuple(conv1_t_stride)
        self.conv1 = nn.Conv3d(n_input_channels, self.in_planes, kernel_size=k, stride=s,
                               padding=tuple(v // 2 for v in k), bias=False)
        self.bn1 = nn.BatchNorm3d(self.in_planes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, block_inplanes[0], layers[0], spatial_dims, shortcut_type)
        self.layer2 = self._make_layer(block, block_inplanes[1], layers[1], spatial_dims, shortcut_type, stride=2)
        self.layer3 = self._make_layer(block, block_inplanes[2], layers[2], spatial_dims, shortcut_type, stride=2)
        self.layer4 = self._make_layer(block, block_inplanes[3], layers[3], spatial_dims, shortcut_type, stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(block_inplanes[3] * block.expansion, num_classes) if feed_forward else None
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block, planes, blocks, spatial_dims, shortcut_type, stride=1):
        downsample = None
        if stride != 1 or self.in_planes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv3d(self.in_planes, planes * block.expansion, kernel_size=1, stride=stride,
                          bias=self.bias_downsample),
                nn.BatchNorm3d(planes * block.expansion))
        layers = [block(in_planes=self.in_planes, planes=planes, spatial_dims=spatial_dims, stride=stride,
                        downsample=downsample)]
        self.in_planes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.in_planes, planes, spatial_dims=spatial_dims))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        if not self.no_max_pool:
            x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        if self.fc is not None:
            x = self.fc(x)
        return x


def resnet10(num_classes=2, widen_factor=1.0, conv1_t_stride=2, n_input_channels=1, **kw):
    """MONAI resnet10: basic blocks [1, 1, 1, 1], widths 64-128-256-512 x widen_factor."""
    return ResNet(ResNetBlock, [1, 1, 1, 1], get_inplanes(), spatial_dims=3, n_input_channels=n_input_channels,
                  conv1_t_stride=conv1_t_stride, widen_factor=widen_factor, num_classes=num_classes, **kw)


def resnet18(num_classes=2, widen_factor=1.0, conv1_t_stride=2, n_input_channels=1, **kw):
    """MONAI resnet18: basic blocks [2, 2, 2, 2], widths 64-128-256-512 x widen_factor."""
    return ResNet(ResNetBlock, [2, 2, 2, 2], get_inplanes(), spatial_dims=3, n_input_channels=n_input_channels,
                  conv1_t_stride=conv1_t_stride, widen_factor=widen_factor, num_classes=num_classes, **kw)


# ---- MONAI DenseNet ----------------------------------------------------------------

class _DenseLayer(nn.Module):
    def __init__(self, spatial_dims, in_channels, growth_rate, bn_size, dropout_prob):
        super().__init__()
        out_channels = bn_size * growth_rate
        self.layers = nn.Sequential()
        self.layers.add_module("norm1", nn.BatchNorm3d(in_channels))
        self.layers.add_module("relu1", nn.ReLU(inplace=True))
        self.layers.add_module("conv1", nn.Conv3d(in_channels, out_channels, kernel_size=1, bias=False))
        self.layers.add_module("norm2", nn.BatchNorm3d(out_channels))
        self.layers.add_module("relu2", nn.ReLU(inplace=True))
        self.layers.add_module("conv2", nn.Conv3d(out_channels, growth_rate, kernel_size=3, padding=1, bias=False))
        if dropout_prob > 0:
            self.layers.add_module("dropout", nn.Dropout3d(dropout_prob))

    def forward(self, x):
        new_features = self.layers(x)
        return torch.cat([x, new_features], 1)


class _DenseBlock(nn.Sequential):
    def __init__(self, spatial_dims, layers, in_channels, bn_size, growth_rate, dropout_prob):
        super().__init__()
        for i in range(layers):
            layer = _DenseLayer(spatial_dims, in_channels, growth_rate, bn_size, dropout_prob)
            in_channels += growth_rate
            self.add_module("denselayer%d" % (i + 1), layer)


class _Transition(nn.Sequential):
    def __init__(self, spatial_dims, in_channels, out_channels):
        super().__init__()
        self.add_module("norm", nn.BatchNorm3d(in_channels))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv3d(in_channels, out_channels, kernel_size=1, bias=False))
        self.add_module("pool", nn.AvgPool3d(kernel_size=2, stride=2))


class DenseNet(nn.Module):
    """MONAI's DenseNet for spatial_dims=3 (densenet121 = init 64, growth 32, blocks (6, 12, 24, 16))."""

    def __init__(self, spatial_dims, in_channels, out_channels, init_features=64, growth_rate=32,
                 block_config=(6, 12, 24, 16), bn_size=4, dropout_prob=0.0):
        super().__init__()
        if spatial_dims != 3:
            raise ValueError("only spatial_dims=3 is written out here")
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv3d(in_channels, init_features, kernel_size=7, stride=2, padding=3, bias=False)),
            ("norm0", nn.BatchNorm3d(init_features)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool3d(kernel_size=3, stride=2, padding=1)),
        ]))
        in_channels = init_features
        for i, num_layers in enumerate(block_config):
            block = _DenseBlock(spatial_dims=spatial_dims, layers=num_layers, in_channels=in_channels,
                                bn_size=bn_size, growth_rate=growth_rate, dropout_prob=dropout_prob)
            self.features.add_module(f"denseblock{i + 1}", block)
            in_channels += num_layers * growth_rate
            if i == len(block_config) - 1:
                self.features.add_module("norm5", nn.BatchNorm3d(in_channels))
            else:
                _out_channels = in_channels // 2
                trans = _Transition(spatial_dims, in_channels=in_channels, out_channels=_out_channels)
                self.features.add_module(f"transition{i + 1}", trans)
                in_channels = _out_channels
        self.class_layers = nn.Sequential(OrderedDict([
            ("relu", nn.ReLU(inplace=True)),
            ("pool", nn.AdaptiveAvgPool3d(1)),
            ("flatten", nn.Flatten(1)),
            ("out", nn.Linear(in_channels, out_channels)),
        ]))
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.features(x)
        x = self.class_layers(x)
        return x


def small_densenet(out_channels=3, in_channels=1, init_features=16, growth_rate=8, block_config=(2, 3, 2), bn_size=4):
    """A small MONAI-layout DenseNet: three dense blocks, two transitions (~40 k parameters)."""
    return DenseNet(3, in_channels, out_channels, init_features=init_features, growth_rate=growth_rate,
                    block_config=block_config, bn_size=bn_size)


# ---- SFCN (Peng et al. 2021) ---------------------------------------------------------

class SFCN(nn.Module):
    """Simple Fully Convolutional Network for brain age (UK Biobank, 1x160x192x160 at 1 mm)."""

    def __init__(self, channel_number=(32, 64, 128, 256, 256, 64), output_dim=40, dropout=True):
        super().__init__()
        channel_number = list(channel_number)
        n_layer = len(channel_number)
        self.feature_extractor = nn.Sequential()
        for i in range(n_layer):
            in_channel = 1 if i == 0 else channel_number[i - 1]
            out_channel = channel_number[i]
            if i < n_layer - 1:
                self.feature_extractor.add_module(
                    "conv_%d" % i, self.conv_layer(in_channel, out_channel, maxpool=True, kernel_size=3, padding=1))
            else:
                self.feature_extractor.add_module(
                    "conv_%d" % i, self.conv_layer(in_channel, out_channel, maxpool=False, kernel_size=1, padding=0))
        self.classifier = nn.Sequential()
        avg_shape = [5, 6, 5]
        self.classifier.add_module("average_pool", nn.AvgPool3d(avg_shape))
        if dropout is True:
            self.classifier.add_module("dropout", nn.Dropout(0.5))
        i = n_layer
        self.classifier.add_module("conv_%d" % i, nn.Conv3d(channel_number[-1], output_dim, padding=0, kernel_size=1))

    @staticmethod
    def conv_layer(in_channel, out_channel, maxpool=True, kernel_size=3, padding=0, maxpool_stride=2):
        if maxpool is True:
            return nn.Sequential(
                nn.Conv3d(in_channel, out_channel, padding=padding, kernel_size=kernel_size),
                nn.BatchNorm3d(out_channel),
                nn.MaxPool3d(2, stride=maxpool_stride),
                nn.ReLU(),
            )
        return nn.Sequential(
            nn.Conv3d(in_channel, out_channel, padding=padding, kernel_size=kernel_size),
            nn.BatchNorm3d(out_channel),
            nn.ReLU(),
        )

    def forward(self, x):
        out = list()
        x_f = self.feature_extractor(x)
        x = self.classifier(x_f)
        x = F.log_softmax(x, dim=1)
        out.append(x)
        return out


SFCN_INPUT = (1, 160, 192, 160)
SFCN_PARAMS = 2952936


class SFCNProbe(nn.Module):
    """SFCN's layer pattern at a size where everything is cheap: one conv_layer
    block with max pool (Conv3d k3 p1, BatchNorm3d, MaxPool3d(2, 2), ReLU), one
    without (k1), then SFCN's classifier (AvgPool3d([5, 6, 5]), Dropout(0.5), 1x1x1
    Conv3d) and log_softmax over dim 1 of the (N, K, 1, 1, 1) result, on input
    1x10x12x10.  Its exports show how each opset writes a 5-D log_softmax."""

    def __init__(self, output_dim=6):
        super().__init__()
        self.feature_extractor = nn.Sequential()
        self.feature_extractor.add_module("conv_0", SFCN.conv_layer(1, 4, maxpool=True, kernel_size=3, padding=1))
        self.feature_extractor.add_module("conv_1", SFCN.conv_layer(4, 8, maxpool=False, kernel_size=1, padding=0))
        self.classifier = nn.Sequential()
        self.classifier.add_module("average_pool", nn.AvgPool3d([5, 6, 5]))
        self.classifier.add_module("dropout", nn.Dropout(0.5))
        self.classifier.add_module("conv_2", nn.Conv3d(8, output_dim, padding=0, kernel_size=1))

    def forward(self, x):
        return [F.log_softmax(self.classifier(self.feature_extractor(x)), dim=1)]


# ---- the notebook model ------------------------------------------------------------

NOTEBOOK_INPUT = (1, 96, 114, 96)


def notebook_model(classes=2, input_shape=NOTEBOOK_INPUT):
    """tools/neurofv_torch.py's "notebook" preset (an nn.Sequential: names 0.weight, ...)."""
    return nt.build_sequential("notebook", input_shape, classes)


# ---- helpers -------------------------------------------------------------------------

def first_output(y):
    """The model's output tensor (SFCN returns a one-element list)."""
    return y[0] if isinstance(y, (list, tuple)) else y


def param_count(model):
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def randomize_bn(model, x, seed=0):
    """BatchNorm running statistics and affine parameters that make eval BN far
    from the identity yet keep activations in range: running stats are set to
    the batch statistics of x (a training-mode pass with cumulative averaging),
    then perturbed: mean += U(-0.3, 0.3) * std, var *= U(0.5, 2); gamma ~ U(0.5,
    1.5), beta ~ U(-0.2, 0.2).  Leaves the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in bns]
    drops = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    model.train()
    for m in drops:
        m.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: after one batch, its statistics
    model(x)
    for m, (mom, _) in zip(bns, saved):
        m.momentum = mom
        c = m.num_features

        def u(lo, hi):
            return lo + (hi - lo) * torch.rand(c, generator=g, dtype=torch.float64)

        std = m.running_var.double().clamp_min(1e-6).sqrt()
        m.running_mean.copy_(m.running_mean.double() + u(-0.3, 0.3) * std)
        m.running_var.copy_(m.running_var.double() * u(0.5, 2.0))
        m.weight.copy_(u(0.5, 1.5))
        m.bias.copy_(u(-0.2, 0.2))
        m.num_batches_tracked.fill_(7)
    model.eval()
    return model


def export_onnx(model, path, input_shape, opset=13, fold=True, training=torch.onnx.TrainingMode.EVAL, batch=1):
    """torch.onnx.export with a dynamic batch axis; the file is checked with
    onnx.checker.  Returns collections.Counter of its op types.

    training=EVAL runs torch's eval peephole, which folds each BatchNorm that
    directly follows a Conv into that Conv, whatever fold (do_constant_folding)
    says; training=PRESERVE on a model in eval mode skips it and keeps every
    BatchNorm as a BatchNormalization node."""
    import onnx
    model.eval()
    x = torch.randn((batch,) + tuple(input_shape))
    torch.onnx.export(model, x, path, opset_version=opset, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, do_constant_folding=fold,
                      training=training)
    onnx.checker.check_model(path)
    m = onnx.load(path)
    return collections.Counter(n.op_type for n in m.graph.node)


def ops_text(counter):
    return ", ".join(f"{k} x{v}" for k, v in sorted(counter.items()))


def build(name, seed=0):
    """(model with randomized BN, its input shape C, D, H, W) for the names the tests use."""
    torch.manual_seed(seed)
    if name == "resnet18":
        model, shape = resnet18(num_classes=3), (1, 64, 64, 64)
    elif name == "resnet10-small":
        model, shape = resnet10(num_classes=3, widen_factor=0.125), (1, 32, 40, 32)
    elif name == "densenet-small":
        model, shape = small_densenet(out_channels=3), (1, 91, 109, 91)
    elif name == "sfcn":
        model, shape = SFCN(), SFCN_INPUT
    elif name == "sfcn-probe":
        model, shape = SFCNProbe(), (1, 10, 12, 10)
    elif name == "notebook":
        model, shape = notebook_model(classes=2), NOTEBOOK_INPUT
    else:
        raise ValueError(name)
    # calibration batch: 2 samples (ResNet-18's layer4 is 2x2x2 at 64^3), 1 for SFCN's large grid
    calib = torch.randn((1 if name == "sfcn" else 2,) + shape, generator=torch.Generator().manual_seed(seed + 100))
    randomize_bn(model, calib, seed=seed + 200)
    return model.eval(), shape


# (model, file suffix, opset, do_constant_folding, training mode)
EXPORTS = [
    ("resnet18", "", 13, True, "EVAL"),
    ("resnet10-small", "", 13, True, "EVAL"),
    ("resnet10-small", "-eval-nofold", 13, False, "EVAL"),
    ("resnet10-small", "-bn-nodes", 13, False, "PRESERVE"),
    ("densenet-small", "", 13, True, "EVAL"),
    ("sfcn", "", 13, True, "EVAL"),
    ("sfcn", "", 11, True, "EVAL"),
    ("sfcn", "", 17, True, "EVAL"),
    ("sfcn", "-bn-nodes", 13, False, "PRESERVE"),
    ("sfcn-probe", "", 13, True, "EVAL"),
    ("sfcn-probe", "", 11, True, "EVAL"),
    ("notebook", "", 13, True, "EVAL"),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="folder for the .onnx files (default: a temporary one)")
    ap.add_argument("--quick", action="store_true", help="skip SFCN (its traces run at 160x192x160)")
    a = ap.parse_args(argv)
    import tempfile
    tmp = None
    out = a.out
    if out is None:
        tmp = tempfile.TemporaryDirectory()
        out = tmp.name
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    ok = True
    models = {}
    for name, suffix, opset, fold, mode in EXPORTS:
        if a.quick and name == "sfcn":
            continue
        if name not in models:
            t = time.time()
            models[name] = build(name)
            model, shape = models[name]
            n = param_count(model)
            extra = ""
            if name == "sfcn":
                good = n == SFCN_PARAMS
                ok &= good
                extra = f" ({'ok' if good else 'FAIL'}: Peng et al. give {SFCN_PARAMS:,})"
            print(f"{name}: {n:,} parameters{extra}, input {'x'.join(map(str, shape))} "
                  f"(built in {time.time() - t:.1f} s)")
        model, shape = models[name]
        path = os.path.join(out, f"{name}{suffix}-opset{opset}.onnx")
        t = time.time()
        ops = export_onnx(model, path, shape, opset=opset, fold=fold, training=getattr(torch.onnx.TrainingMode, mode))
        print(f"  {os.path.basename(path)} (fold={fold}, training={mode}; checker ok, {time.time() - t:.1f} s): "
              f"{ops_text(ops)}")
    if tmp:
        tmp.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
