#!/usr/bin/python3
"""Draws the add-on store's icon.png (128x128) and logo.png (250x100): a Classe 300X-style door
panel (camera, speaker grille, call button) with a ring wave, in Home Assistant blue.

Run from the repository root with Debian's python3-pil: /usr/bin/python3 addon/draw-icons.py
(drawn at 4x and scaled down for smooth edges; DejaVu fonts from fonts-dejavu-core)."""

from PIL import Image, ImageDraw, ImageFont

BLUE = (3, 169, 244, 255)
DARK = (38, 50, 56, 255)
PANEL = (236, 239, 241, 255)
WHITE = (255, 255, 255, 255)
S = 4  # supersampling


def panel(d: ImageDraw.ImageDraw, x: float, y: float, h: float) -> None:
    """The door panel, h tall, its top-left at (x, y); the ring wave to its right."""
    w = h * 0.56
    r = w * 0.18
    d.rounded_rectangle([x, y, x + w, y + h], radius=r, fill=DARK)
    m = w * 0.09
    d.rounded_rectangle([x + m, y + m, x + w - m, y + h - m], radius=r * 0.6, fill=PANEL)
    cx = x + w / 2
    # Camera: lens in a dark ring.
    cy, cr = y + h * 0.22, w * 0.17
    d.ellipse([cx - cr, cy - cr, cx + cr, cy + cr], fill=DARK)
    d.ellipse([cx - cr * 0.5, cy - cr * 0.5, cx + cr * 0.5, cy + cr * 0.5], fill=BLUE)
    d.ellipse([cx - cr * 0.18 - cr * 0.2, cy - cr * 0.18 - cr * 0.2, cx + cr * 0.18 - cr * 0.2,
               cy + cr * 0.18 - cr * 0.2], fill=WHITE)
    # Speaker grille.
    gw, gh = w * 0.46, h * 0.025
    for i in range(3):
        gy = y + h * (0.43 + i * 0.065)
        d.rounded_rectangle([cx - gw / 2, gy, cx + gw / 2, gy + gh], radius=gh / 2, fill=DARK)
    # Call button.
    by, br = y + h * 0.76, w * 0.2
    d.ellipse([cx - br, by - br, cx + br, by + br], fill=BLUE)
    d.ellipse([cx - br * 0.35, by - br * 0.35, cx + br * 0.35, by + br * 0.35], fill=WHITE)
    # Ring wave: two arcs around the button, outside the panel.
    for k in (0.66, 0.86):
        rr = w * k
        d.arc([cx - rr, by - rr, cx + rr, by + rr], start=-38, end=38, fill=BLUE,
              width=int(w * 0.08))


def icon() -> Image.Image:
    img = Image.new("RGBA", (128 * S, 128 * S), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    h = 112 * S
    panel(d, 14 * S, 8 * S, h)
    return img.resize((128, 128), Image.LANCZOS)


def logo() -> Image.Image:
    img = Image.new("RGBA", (250 * S, 100 * S), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    panel(d, 6 * S, 6 * S, 88 * S)
    bold = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", 34 * S)
    regular = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 19 * S)
    d.text((96 * S, 14 * S), "C300X", font=bold, fill=DARK)
    d.text((97 * S, 54 * S), "Bridge", font=regular, fill=BLUE)
    d.text((97 * S, 76 * S), "for Home Assistant", font=ImageFont.truetype(
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 11 * S), fill=DARK)
    return img.resize((250, 100), Image.LANCZOS)


if __name__ == "__main__":
    icon().save("icon.png", optimize=True)
    logo().save("logo.png", optimize=True)
