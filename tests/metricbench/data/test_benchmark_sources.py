"""The photo benchmarks' loaders (CUB-200-2011, Cars196, SOP, In-Shop) and image tables, on trees written in the
official layouts by tests/photo_fixtures.py; expected values are read back from the fixture's own files."""

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from photo_fixtures import (
    SOP_SUPER_CLASSES,
    write_cars_tree,
    write_cub_tree,
    write_image_table,
    write_inshop_tree,
    write_sop_tree,
)
from scipy.io import loadmat, savemat

from metricbench.data import (
    ImageFiles,
    available_datasets,
    load_cars196,
    load_cub200,
    load_dataset,
    load_image_table,
    load_inshop,
    load_sop,
)


def _rows(path: Path, skip: int = 0) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()[skip:] if line.strip()]


def _edit_line(path: Path, number: int, text: str | None) -> None:
    """Replace 1-based line ``number`` of ``path`` with ``text``, or delete it (None)."""
    lines = path.read_text().splitlines()
    if text is None:
        del lines[number - 1]
    else:
        lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def _copy(tree: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tree, tmp_path / tree.name))


def _all_files_exist(data: ImageFiles) -> bool:
    return all(data.path(row).is_file() for row in range(len(data)))


def test_photo_specs_are_listed_as_streamed():
    rows = {row["name"]: row for row in available_datasets()}
    for spec in ("cub200:DIR", "cars196:DIR", "sop:DIR", "inshop:DIR", "folder:DIR", "files:TABLE"):
        assert rows[spec]["kind"] == "photos (streamed)"


# ---------------------------------------------------------------- CUB-200-2011


@pytest.fixture(scope="module")
def cub(tmp_path_factory) -> Path:
    return write_cub_tree(tmp_path_factory.mktemp("cub"))


@pytest.fixture
def cub_copy(cub, tmp_path) -> Path:
    return _copy(cub, tmp_path)


def test_cub200_is_what_its_list_files_say(cub):
    data = load_cub200(cub)
    images = _rows(cub / "images.txt")
    class_of = dict(_rows(cub / "image_class_labels.txt"))
    names = [name for _, name in _rows(cub / "classes.txt")]
    boxes = {row[0]: [float(v) for v in row[1:]] for row in _rows(cub / "bounding_boxes.txt")}
    assert isinstance(data, ImageFiles) and data.name == "cub200" and data.recall_ks == (1, 2, 4, 8)
    assert data.root == cub / "images" and len(data) == 300 and _all_files_exist(data)
    assert data.paths == tuple(path for _, path in images)
    assert data.class_names == tuple(names) and data.num_classes == 200
    assert data.class_names[:2] == ("001.Black_footed_Albatross", "002.Laysan_Albatross")
    assert [data.class_names[i] for i in data.y] == [names[int(class_of[image_id]) - 1] for image_id, _ in images]
    train = [row for row, (image_id, _) in enumerate(images) if int(class_of[image_id]) <= 100]
    assert list(data.parts) == ["train", "test"]
    np.testing.assert_array_equal(data.parts["train"], train)
    assert len(data.parts["train"]) == 150 and len(data.parts["test"]) == 150
    assert set(data.class_names[i] for i in data.y[data.parts["train"]]) == set(names[:100])
    np.testing.assert_array_equal(data.boxes, [boxes[image_id] for image_id, _ in images])


def test_cub200_from_its_parent_and_by_spec(cub):
    data = load_cub200(cub)
    assert load_cub200(cub.parent).fingerprint == data.fingerprint
    from_spec = load_dataset(f"cub200:{cub.parent}")
    assert isinstance(from_spec, ImageFiles) and from_spec.fingerprint == data.fingerprint


def test_cub200_ignores_the_classification_split(cub, cub_copy):
    (cub_copy / "train_test_split.txt").write_text("garbage\n")
    assert load_cub200(cub_copy).fingerprint == load_cub200(cub).fingerprint


def test_cub200_labels_listed_in_another_order(cub, cub_copy):
    labels = cub_copy / "image_class_labels.txt"
    labels.write_text("\n".join(reversed(labels.read_text().splitlines())) + "\n")
    assert load_cub200(cub_copy).fingerprint == load_cub200(cub).fingerprint


def test_cub200_fingerprint_changes_with_a_label(cub, cub_copy):
    _edit_line(cub_copy / "image_class_labels.txt", 1, "1 2")
    changed = load_cub200(cub_copy)
    assert changed.class_names[changed.y[0]] == "002.Laysan_Albatross"
    assert changed.fingerprint != load_cub200(cub).fingerprint


def test_cub200_windows_line_ends_and_a_path_with_a_space(cub, cub_copy):
    for name in ("images.txt", "image_class_labels.txt", "classes.txt", "bounding_boxes.txt"):
        path = cub_copy / name
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert load_cub200(cub_copy).fingerprint == load_cub200(cub).fingerprint
    first = _rows(cub_copy / "images.txt")[0][1]
    (cub_copy / "images" / first).rename(cub_copy / "images" / "001.Black_footed_Albatross" / "a b.jpg")
    _edit_line(cub_copy / "images.txt", 1, "1 001.Black_footed_Albatross/a b.jpg")
    assert load_cub200(cub_copy).paths[0] == "001.Black_footed_Albatross/a b.jpg"


@pytest.mark.parametrize("name", ["images.txt", "image_class_labels.txt", "classes.txt", "bounding_boxes.txt"])
def test_cub200_missing_list_file(cub_copy, name):
    (cub_copy / name).unlink()
    message = "not found in .*; expected the CUB-200-2011 layout" if name == "images.txt" else (
        f"{name} not found in {re.escape(str(cub_copy))}; expected the CUB-200-2011 layout: CUB_200_2011/ holding")
    with pytest.raises(FileNotFoundError, match=message):
        load_cub200(cub_copy)


def test_cub200_nothing_there(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"CUB-200-2011: images.txt not found in {tmp_path} nor in its "
                                                "sub-folders; expected the CUB-200-2011 layout"):
        load_cub200(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"CUB-200-2011 folder not found: {tmp_path / 'missing'}"):
        load_cub200(tmp_path / "missing")


@pytest.mark.parametrize(("name", "line", "text", "message"), [
    ("images.txt", 3, "3", r"images.txt, line 3: expected 2 whitespace-separated fields \(image_id path\), got '3'"),
    ("images.txt", 2, "two 001.a/b.jpg", r"images.txt, line 2: image_id must be an integer, got 'two'"),
    ("images.txt", 4, "3 001.a/b.jpg", r"images.txt, line 4: image id 3 is listed twice \(first on line 3\)"),
    ("image_class_labels.txt", 5, "5 1 1", r"image_class_labels.txt, line 5: expected 2 whitespace-separated fields "
                                           r"\(image_id class_id\), got '5 1 1'"),
    ("image_class_labels.txt", 300, None, r"image_class_labels.txt lists 299 images but .*images.txt lists 300; "
                                          r"expected one line per image"),
    ("image_class_labels.txt", 300, "9999 200", r"images.txt, line 300: image id 300 has no line in "
                                                r".*image_class_labels.txt, which lists id 9999 instead"),
    ("image_class_labels.txt", 7, "7 201", r"image_class_labels.txt, line 7: class id 201 has no name in "
                                           r".*classes.txt \(valid ids: 1..200\)"),
    ("image_class_labels.txt", 7, "7 0", r"line 7: class id 0 has no name in .*classes.txt \(valid ids: 1..200\)"),
    ("classes.txt", 2, "3 003.Sooty_Albatross", r"classes.txt, line 2: expected class id 2 \(ids 1..200 in order\), "
                                                r"got 3"),
    ("bounding_boxes.txt", 2, "2 1.0 1.0 0.0 5.0", r"bounding_boxes.txt, line 2: expected a box x y width height "
                                                   r"with x, y >= 0 and width, height > 0, got \[1.0, 1.0, 0.0, 5.0\]"),
    ("bounding_boxes.txt", 2, "2 1.0 one 3.0 5.0", r"bounding_boxes.txt, line 2: y must be a number, got 'one'"),
    ("bounding_boxes.txt", 9, "99999 1 1 3 5", r"image id 9 has no line in .*bounding_boxes.txt, which lists id "
                                               r"99999 instead"),
])
def test_cub200_bad_lines(cub_copy, name, line, text, message):
    _edit_line(cub_copy / name, line, text)
    with pytest.raises(ValueError, match=message):
        load_cub200(cub_copy)


def test_cub200_listed_image_not_on_disk(cub_copy):
    seventh = _rows(cub_copy / "images.txt")[6][1]
    (cub_copy / "images" / seventh).unlink()
    with pytest.raises(FileNotFoundError, match=f"images.txt: image 7 of the list, '{re.escape(seventh)}', is not on "
                                                "disk"):
        load_cub200(cub_copy)


# ---------------------------------------------------------------- Cars196


@pytest.fixture(scope="module")
def cars(tmp_path_factory) -> Path:
    return write_cars_tree(tmp_path_factory.mktemp("cars"))


@pytest.fixture
def cars_copy(cars, tmp_path) -> Path:
    return _copy(cars, tmp_path)


def _annotations(folder: Path) -> tuple[list[tuple], list[str]]:
    """(path, x1, y1, x2, y2, class) per annotation and the class names, read with scipy directly."""
    mat = loadmat(folder / "cars_annos.mat")
    fields = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class")
    rows = [(str(a["relative_im_path"][0]), *(int(a[f][0, 0]) for f in fields)) for a in mat["annotations"][0]]
    return rows, [str(name[0]) for name in mat["class_names"][0]]


def test_cars196_is_what_its_mat_file_says(cars):
    data = load_cars196(cars)
    rows, names = _annotations(cars)
    assert isinstance(data, ImageFiles) and data.name == "cars196" and data.recall_ks == (1, 2, 4, 8)
    assert data.root == cars and len(data) == 294 and _all_files_exist(data)
    assert data.paths == tuple(row[0] for row in rows) and data.paths[0] == "car_ims/000001.jpg"
    assert data.class_names == tuple(names) and data.num_classes == 196
    assert data.class_names[0] == "AM General Hummer SUV 2000" and all(" " in name for name in data.class_names)
    assert [data.class_names[i] for i in data.y] == [names[row[5] - 1] for row in rows]
    train = [i for i, row in enumerate(rows) if row[5] <= 98]
    assert 0 < len(train) < len(rows) and train != list(range(len(train)))  # classes are not in row order
    np.testing.assert_array_equal(data.parts["train"], train)
    np.testing.assert_array_equal(data.parts["test"], sorted(set(range(len(rows))) - set(train)))
    assert set(data.class_names[i] for i in data.y[data.parts["train"]]) == set(names[:98])
    # 1-based inclusive x1..x2 -> 0-based x = x1 - 1 and width x2 - x1 + 1
    np.testing.assert_array_equal(data.boxes, [(x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1)
                                               for _, x1, y1, x2, y2, _ in rows])


def test_cars196_from_its_parent_and_by_spec(cars):
    data = load_cars196(cars)
    assert load_cars196(cars.parent).fingerprint == data.fingerprint
    assert load_dataset(f"cars196:{cars}").fingerprint == data.fingerprint


def _rewrite_mat(folder: Path, edit) -> None:
    mat = loadmat(folder / "cars_annos.mat")
    variables = {"annotations": mat["annotations"], "class_names": mat["class_names"]}
    edit(variables)
    savemat(folder / "cars_annos.mat", variables)


def _without_field(annotations: np.ndarray, field: str) -> np.ndarray:
    names = [name for name in annotations.dtype.names if name != field]
    kept = np.empty(annotations.shape, dtype=[(name, object) for name in names])
    for name in names:
        kept[name] = annotations[name]
    return kept


def test_cars196_mat_without_a_field(cars_copy):
    _rewrite_mat(cars_copy, lambda v: v.update(annotations=_without_field(v["annotations"], "class")))
    with pytest.raises(ValueError, match=r"cars_annos.mat: annotations have no field 'class'; fields: "
                                         r"relative_im_path, bbox_x1, bbox_y1, bbox_x2, bbox_y2, test"):
        load_cars196(cars_copy)


def test_cars196_mat_without_class_names(cars_copy):
    _rewrite_mat(cars_copy, lambda v: v.pop("class_names"))
    with pytest.raises(ValueError, match="cars_annos.mat: variable 'class_names' not found; variables: annotations"):
        load_cars196(cars_copy)


def test_cars196_class_without_a_name(cars_copy):
    def edit(variables):
        variables["annotations"][0, 2]["class"] = np.array([[197]], dtype=np.uint16)

    _rewrite_mat(cars_copy, edit)
    with pytest.raises(ValueError, match=r"cars_annos.mat: annotation 3 \(car_ims/000003.jpg\) has class 197; "
                                         r"valid: 1..196 \(class_names has 196 names\)"):
        load_cars196(cars_copy)


def test_cars196_empty_box(cars_copy):
    def edit(variables):
        variables["annotations"][0, 1]["bbox_x2"] = np.array([[0]], dtype=np.uint16)

    _rewrite_mat(cars_copy, edit)
    with pytest.raises(ValueError, match=r"annotation 2 \(car_ims/000002.jpg\) has an empty box: x1=3, y1=1, x2=0"):
        load_cars196(cars_copy)


def test_cars196_not_a_mat_file(cars_copy):
    (cars_copy / "cars_annos.mat").write_bytes(b"not a MATLAB file")
    with pytest.raises(ValueError, match="cars_annos.mat: cannot read as a MATLAB .mat file"):
        load_cars196(cars_copy)


def test_cars196_missing_mat_and_missing_image(cars_copy, tmp_path):
    (cars_copy / "car_ims" / "000005.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"cars_annos.mat: image 5 of the list, 'car_ims/000005.jpg', is "
                                                r"not on disk"):
        load_cars196(cars_copy)
    (cars_copy / "cars_annos.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"Cars196: cars_annos.mat not found in .* nor in its sub-folders; "
                                                r"expected the Cars196 layout: cars_annos.mat beside car_ims/"):
        load_cars196(cars_copy)


# ---------------------------------------------------------------- Stanford Online Products


@pytest.fixture(scope="module")
def sop(tmp_path_factory) -> Path:
    return write_sop_tree(tmp_path_factory.mktemp("sop"))


@pytest.fixture
def sop_copy(sop, tmp_path) -> Path:
    return _copy(sop, tmp_path)


def test_sop_is_what_its_list_files_say(sop):
    data = load_sop(sop)
    train, test = _rows(sop / "Ebay_train.txt", skip=1), _rows(sop / "Ebay_test.txt", skip=1)
    rows = train + test
    assert isinstance(data, ImageFiles) and data.name == "sop" and data.recall_ks == (1, 10, 100, 1000)
    assert data.root == sop and len(data) == len(rows) == 405 and _all_files_exist(data)
    assert data.paths == tuple(row[3] for row in rows)
    assert data.class_names == tuple(str(c) for c in range(1, 61))  # numeric order: "10" after "9"
    assert [data.class_names[i] for i in data.y] == [row[1] for row in rows]
    assert list(data.parts) == ["train", "test"]
    np.testing.assert_array_equal(data.parts["train"], np.arange(len(train)))
    np.testing.assert_array_equal(data.parts["test"], np.arange(len(train), len(rows)))
    assert {data.class_names[i] for i in data.y[data.parts["test"]]} == {str(c) for c in range(31, 61)}
    expected = [SOP_SUPER_CLASSES[int(row[2]) - 1] for row in rows]
    assert data.metadata["super_class"].tolist() == expected and data.metadata["super_class"][0] == "bicycle"
    assert set(expected) == set(SOP_SUPER_CLASSES)
    counts = np.bincount(data.y)
    assert counts.min() == 2 and counts.max() == 12


def test_sop_from_its_parent_and_by_spec(sop):
    data = load_sop(sop)
    assert load_sop(sop.parent).fingerprint == data.fingerprint
    assert load_dataset(f"sop:{sop.parent}").fingerprint == data.fingerprint


@pytest.mark.parametrize(("name", "line", "text", "message"), [
    ("Ebay_train.txt", 1, "id class path", r"Ebay_train.txt, line 1: expected the header "
                                           r"'image_id class_id super_class_id path', got 'id class path'"),
    ("Ebay_test.txt", 4, "4 31 bicycle_final/x.JPG", r"Ebay_test.txt, line 4: expected 4 whitespace-separated "
                                                     r"fields \(image_id class_id super_class_id path\), got"),
    ("Ebay_train.txt", 3, "2 one 1 bicycle_final/x.JPG", r"Ebay_train.txt, line 3: class_id must be an integer, "
                                                         r"got 'one'"),
    ("Ebay_test.txt", 2, "1 31 1 x.JPG", r"Ebay_test.txt, line 2: expected a path inside a super-class folder such "
                                         r"as bicycle_final/111085122871_0.JPG, got 'x.JPG'"),
])
def test_sop_bad_lines(sop_copy, name, line, text, message):
    _edit_line(sop_copy / name, line, text)
    with pytest.raises(ValueError, match=message):
        load_sop(sop_copy)


def test_sop_empty_list_file(sop_copy):
    (sop_copy / "Ebay_test.txt").write_text("")
    with pytest.raises(ValueError, match="Ebay_test.txt, line 1: expected the header .* got 'an empty file'"):
        load_sop(sop_copy)


def test_sop_missing_list_file_and_image(sop_copy):
    first_test = _rows(sop_copy / "Ebay_test.txt", skip=1)[0][3]
    (sop_copy / first_test).unlink()
    with pytest.raises(FileNotFoundError, match=f"Ebay_train.txt \\+ Ebay_test.txt .*: image 199 of the list, "
                                                f"'{first_test}', is not on disk"):
        load_sop(sop_copy)
    (sop_copy / "Ebay_test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=f"Ebay_test.txt not found in {re.escape(str(sop_copy))}; expected "
                                                "the Stanford Online Products layout"):
        load_sop(sop_copy)


# ---------------------------------------------------------------- In-Shop


@pytest.fixture(scope="module")
def inshop(tmp_path_factory) -> Path:
    return write_inshop_tree(tmp_path_factory.mktemp("inshop"))


@pytest.fixture
def inshop_copy(inshop, tmp_path) -> Path:
    return _copy(inshop, tmp_path)


def test_inshop_is_what_its_partition_file_says(inshop):
    data = load_inshop(inshop)
    listing = inshop / "Eval" / "list_eval_partition.txt"
    rows = _rows(listing, skip=2)
    assert int(listing.read_text().splitlines()[0]) == len(rows) == len(data) == 164
    assert isinstance(data, ImageFiles) and data.name == "inshop" and data.recall_ks == (1, 10, 20, 30, 40, 50)
    assert data.root == inshop / "Img" and _all_files_exist(data)
    assert data.paths == tuple(row[0] for row in rows) and data.paths[0].startswith("img/")
    assert data.class_names == tuple(sorted({row[1] for row in rows})) and data.num_classes == 50
    assert [data.class_names[i] for i in data.y] == [row[1] for row in rows]
    assert list(data.parts) == ["train", "query", "gallery"]
    for part, expected_size in (("train", 59), ("query", 45), ("gallery", 60)):
        np.testing.assert_array_equal(data.parts[part], [i for i, row in enumerate(rows) if row[2] == part])
        assert len(data.parts[part]) == expected_size
    assert not set(data.y[data.parts["train"]]) & set(data.y[data.parts["query"]])
    assert set(data.y[data.parts["query"]]) == set(data.y[data.parts["gallery"]])


def test_inshop_flat_layout_and_parent(inshop, tmp_path):
    official = load_inshop(inshop)
    flat = load_inshop(write_inshop_tree(tmp_path, layout="flat", folder="flat"))
    assert flat.root == tmp_path / "flat" and _all_files_exist(flat)
    assert flat.fingerprint == official.fingerprint  # same rows, only the folder holding img/ differs
    assert load_inshop(inshop.parent).fingerprint == official.fingerprint  # folder name with spaces
    assert load_dataset(f"inshop:{inshop.parent}").fingerprint == official.fingerprint


def test_inshop_two_candidates_in_the_parent(tmp_path):
    write_inshop_tree(tmp_path, folder="a")
    write_inshop_tree(tmp_path, layout="flat", folder="b")
    with pytest.raises(ValueError, match=f"{tmp_path}: several In-Shop folders found: {tmp_path / 'a'}, "
                                         f"{tmp_path / 'b'}; give the one to use"):
        load_inshop(tmp_path)


@pytest.mark.parametrize(("line", "text", "message"), [
    (1, "112", r"list_eval_partition.txt: line 1 says 112 images but 164 are listed after the header"),
    (1, "many", r"list_eval_partition.txt, line 1: expected the number of images, got 'many'"),
    (2, "image_name item_id", r"line 2: expected the header 'image_name item_id evaluation_status', got "
                              r"'image_name item_id'"),
    (7, "img/a.jpg id_00000002 val", r"list_eval_partition.txt, line 7: evaluation_status must be train, query "
                                     r"or gallery, got 'val'"),
    (8, "img/a.jpg id_00000002", r"list_eval_partition.txt, line 8: expected 3 whitespace-separated fields "
                                 r"\(image_name item_id evaluation_status\), got 'img/a.jpg id_00000002'"),
])
def test_inshop_bad_lines(inshop_copy, line, text, message):
    _edit_line(inshop_copy / "Eval" / "list_eval_partition.txt", line, text)
    with pytest.raises(ValueError, match=message):
        load_inshop(inshop_copy)


def test_inshop_missing_partition_file_and_image(inshop_copy):
    first = _rows(inshop_copy / "Eval" / "list_eval_partition.txt", skip=2)[0][0]
    (inshop_copy / "Img" / first).unlink()
    with pytest.raises(FileNotFoundError, match=f"list_eval_partition.txt: image 1 of the list, '{first}', is not "
                                                "on disk"):
        load_inshop(inshop_copy)
    (inshop_copy / "Eval" / "list_eval_partition.txt").unlink()
    with pytest.raises(FileNotFoundError, match="In-Shop: Eval/list_eval_partition.txt or list_eval_partition.txt "
                                                "not found in .* nor in its sub-folders; expected the In-Shop"):
        load_inshop(inshop_copy)


# ---------------------------------------------------------------- files: tables


def test_table_without_split(tmp_path):
    table = write_image_table(tmp_path)
    data = load_image_table(table)
    frame = pd.read_csv(table)
    assert isinstance(data, ImageFiles) and data.name == "photos" and data.root == tmp_path
    assert data.paths == tuple(frame["path"]) and _all_files_exist(data)
    assert data.class_names == ("class_00", "class_01", "class_02", "class_03") and data.parts == {}
    assert [data.class_names[i] for i in data.y] == frame["label"].tolist()
    assert load_dataset(f"files:{table}").fingerprint == data.fingerprint


def test_table_train_test_split_with_absolute_paths(tmp_path):
    table = write_image_table(tmp_path, split="train/test", absolute=True)
    data = load_image_table(table)
    frame = pd.read_csv(table)
    assert all(Path(p).is_absolute() for p in data.paths) and _all_files_exist(data)
    assert list(data.parts) == ["train", "test"]
    np.testing.assert_array_equal(data.parts["train"], np.flatnonzero(frame["split"] == "train"))
    assert data.fingerprint != load_image_table(write_image_table(tmp_path, split="train/test")).fingerprint


def test_parquet_train_query_gallery_split(tmp_path):
    data = load_image_table(write_image_table(tmp_path, fmt="parquet", split="train/query/gallery"))
    assert data.name == "photos" and list(data.parts) == ["train", "query", "gallery"]
    assert [len(rows) for rows in data.parts.values()] == [6, 2, 4]


def test_table_labels_stay_text(tmp_path):
    write_image_table(tmp_path)
    table = tmp_path / "codes.csv"
    table.write_text("path,label\nimages/class_00/0.jpg,007\nimages/class_01/0.jpg,NA\nimages/class_02/0.jpg,10\n")
    assert load_image_table(table).class_names == ("007", "10", "NA")


@pytest.mark.parametrize(("text", "error", "message"), [
    ("file,label\na.jpg,x\n", ValueError, r"photos.csv: column 'path' not found; columns: file, label"),
    ("path,class\na.jpg,x\n", ValueError, r"photos.csv: column 'label' not found; columns: path, class"),
    ("path,label,split\nimages/class_00/0.jpg,a,train\nimages/class_01/0.jpg,b,val\n", ValueError,
     r"photos.csv, row 2: split must be train, test, query or gallery, got 'val'"),
    ("path,label,split\nimages/class_00/0.jpg,a,train\nimages/class_01/0.jpg,b,test\nimages/class_01/1.jpg,b,query\n",
     ValueError, r"photos.csv: split mixes test \(row 2\) with query/gallery \(row 3\)"),
    ("path,label\nimages/class_00/0.jpg,a\nimages/class_01/0.jpg,\n", ValueError,
     r"photos.csv, row 2: label is missing"),
    ("path,label\nimages/class_00/0.jpg,a\nimages/class_01/9.jpg,b\n", FileNotFoundError,
     r"photos.csv: image 2 of the list, 'images/class_01/9.jpg', is not on disk"),
    ("", ValueError, r"photos.csv: cannot read as csv"),
])
def test_table_bad_input(tmp_path, text, error, message):
    table = write_image_table(tmp_path)
    table.write_text(text)
    with pytest.raises(error, match=message):
        load_image_table(table)


def test_table_other_suffix_and_missing_file(tmp_path):
    (tmp_path / "photos.txt").write_text("path,label\n")
    with pytest.raises(ValueError, match=r"photos.txt: expected a .csv or .parquet table .* got suffix '.txt'"):
        load_image_table(tmp_path / "photos.txt")
    with pytest.raises(FileNotFoundError, match="image table not found: .*none.csv"):
        load_image_table(tmp_path / "none.csv")
    with pytest.raises(ValueError, match=r"dataset spec 'files:.*' expects a file, got a directory"):
        load_dataset(f"files:{tmp_path}")
