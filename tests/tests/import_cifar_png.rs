//! Golden test of the whole import path on real data: the pretrained ReLU ResNet-20
//! (`models/onnx/resnet20_relu.onnx`) on the 20 foolbox CIFAR-10 PNGs
//! (`tests/data/cifar10/cifar10_<i>_<label>.png`), normalised with the model's `mean` / `std`
//! metadata, must classify (nearly) all of them correctly.

use std::path::Path;

use compiler::image::{load_png, parse_triple};
use compiler::onnx::{import_path, ImportOptions};

#[test]
fn resnet20_classifies_cifar_pngs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let model = root.join("models/onnx/resnet20_relu.onnx");
    let imp = import_path(&model, &ImportOptions::default()).expect("import resnet20_relu");
    let mean = parse_triple(imp.meta("mean").expect("mean metadata")).unwrap();
    let std = parse_triple(imp.meta("std").expect("std metadata")).unwrap();
    let mut pngs: Vec<_> = std::fs::read_dir(root.join("tests/data/cifar10"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    pngs.sort();
    assert_eq!(pngs.len(), 20);
    let mut correct = 0;
    for p in &pngs {
        let stem = p.file_stem().unwrap().to_string_lossy().to_string();
        let label: usize = stem.rsplit('_').next().unwrap().parse().unwrap();
        let x = load_png(p, [32, 32], mean, std).unwrap();
        let out = passes::interpret::run(&imp.graph, &[x]).unwrap();
        let logits = out[0].data();
        assert_eq!(logits.len(), 10);
        let top1 = (0..10)
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap();
        correct += (top1 == label) as usize;
    }
    eprintln!("{correct} / 20 correct");
    assert!(
        correct >= 18,
        "only {correct} / 20 CIFAR-10 PNGs classified correctly"
    );
}
