from pathlib import Path

import pytest

from meterguard.errors import MeterCsvError
from meterguard.meters_csv import read_meters_csv, write_meters_csv


def test_layout_is_free_and_optional_columns_may_be_missing_or_blank(tmp_path: Path) -> None:
    path = tmp_path / "meters.csv"
    path.write_text(
        "transformer, nominal_v,meter,service,generation,ct_primary_a\n"
        "T1,230,M1,3P4W,TRUE,200\n"
        "T1,120,M2,1p2w,,\n"
        ",,,,,\n"
    )
    meters = read_meters_csv(path)
    assert [m.id for m in meters] == ["M1", "M2"]
    assert meters[0].service == "3p4w"
    assert meters[0].generation
    assert meters[0].ct_primary_a == 200
    assert meters[1].nominal_v == 120
    assert not meters[1].generation
    assert meters[1].role == "customer"
    assert meters[1].ct_primary_a is None


def test_bad_row_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "meters.csv"
    path.write_text("meter,service,nominal_v\nM1,3p4w,230\nM2,4p5w,230\n")
    with pytest.raises(MeterCsvError) as info:
        read_meters_csv(path)
    assert info.value.line == 3
    assert "service" in str(info.value)


def test_missing_required_column_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "meters.csv"
    path.write_text("meter,nominal_v\nM1,230\n")
    with pytest.raises(MeterCsvError, match="service"):
        read_meters_csv(path)
    path.write_text("meter,service,nominal_v\nM1,1p2w,230\nM1,1p2w,230\n")
    with pytest.raises(MeterCsvError, match="twice"):
        read_meters_csv(path)


def test_write_then_read_is_identity(tmp_path: Path) -> None:
    path = tmp_path / "meters.csv"
    source = tmp_path / "in.csv"
    source.write_text(
        "meter,service,nominal_v,ct_primary_a,generation,transformer,role,customer_class,"
        "contracted_kw\nF1,3p4w,230,400,false,T1,feeder,,\nM1,1p2w,230,,true,T1,customer,"
        "residential,5.5\n"
    )
    meters = read_meters_csv(source)
    write_meters_csv(path, meters)
    assert read_meters_csv(path) == meters
