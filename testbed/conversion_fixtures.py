"""Real files of every format the batch converts, written here: each holds personal data the
offline analyser must find once it is converted."""

import io
from email.message import EmailMessage

import openpyxl
from docx import Document
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont
from pptx import Presentation


def scan_image(lines: list[str]) -> Image.Image:
    """A page of text as a scanner would give it: pixels only."""
    font = ImageFont.load_default(size=36)
    image = Image.new("L", (1400, 120 + 70 * len(lines)), color=255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((60, 60 + 70 * i), line, fill=0, font=font)
    return image


def png_scan(lines: list[str]) -> bytes:
    buffer = io.BytesIO()
    scan_image(lines).save(buffer, format="PNG")
    return buffer.getvalue()


def text_pdf(lines: list[str], password: str | None = None) -> bytes:
    pdf = FPDF()
    if password:
        pdf.set_encryption(owner_password=password + "-owner", user_password=password)
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    for line in lines:
        pdf.cell(0, 10, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def scanned_pdf(lines: list[str]) -> bytes:
    """A PDF whose one page is an image of text, with no text layer."""
    pdf = FPDF()
    pdf.add_page()
    pdf.image(scan_image(lines), x=10, y=10, w=190)
    return bytes(pdf.output())


def docx(paragraph: str, table_cells: list[list[str]]) -> bytes:
    document = Document()
    document.add_heading("Quarterly review", 1)
    document.add_paragraph(paragraph)
    table = document.add_table(rows=len(table_cells), cols=len(table_cells[0]))
    for r, row in enumerate(table_cells):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def pptx(title: str, body: str, notes: str) -> bytes:
    presentation = Presentation()
    slide = presentation.slides.add_slide(presentation.slide_layouts[1])
    slide.shapes.title.text = title
    slide.placeholders[1].text = body
    slide.notes_slide.notes_text_frame.text = notes
    buffer = io.BytesIO()
    presentation.save(buffer)
    return buffer.getvalue()


def xlsx(rows: list[list[str]]) -> bytes:
    workbook = openpyxl.Workbook()
    for row in rows:
        workbook.active.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def html(body: str) -> bytes:
    return (
        "<html><head><title>Saved page</title><style>p {color: red}</style>"
        "<script>var tracking_id = 'x_y';</script></head>"
        f"<body><h1>Contact</h1><p>{body}</p></body></html>"
    ).encode()


def eml(sender: str, body_html: str, attachment_name: str, attachment: bytes) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "Compliance <compliance@example.org>"
    message["Subject"] = "Customer details"
    message.set_content("See the HTML part.")
    message.add_alternative(f"<html><body><p>{body_html}</p></body></html>", subtype="html")
    message.add_attachment(attachment, maintype="application", subtype="octet-stream", filename=attachment_name)
    return bytes(message)
