#!/usr/bin/env python3
"""Build an independent, labelled evaluation set for a detector of personal data
and secrets.  Standard library only, fully deterministic (fixed seed).

Writes detection_eval.jsonl next to this script.  Every template and value list
below was written by hand for this set.

Template mini-language: plain text with slots  ⟦type[:arg][#tag]⟧ .
  * type  selects a generator (entity, hard negative, or plain filler)
  * arg   optional generator argument
  * tag   memoises the value inside one document (same tag -> same value);
          for person-derived slots (name, email, ...) the tag names a person,
          for phone slots it names one telephone number (which may then be
          written in several formats).
"""
import base64
import hashlib
import json
import os
import random
import re
import string
import sys
from collections import Counter

SEED = 20240611
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "detection_eval.jsonl")

CATEGORIES = ["email", "phone", "payment_card", "iban", "ssn", "secret"]

# ---------------------------------------------------------------------------
# checksums
# ---------------------------------------------------------------------------

def luhn_sum(digits):
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10


def luhn_ok(s):
    d = re.sub(r"\D", "", s)
    return len(d) > 1 and luhn_sum(d) == 0


def luhn_complete(prefix):
    return prefix + str((10 - luhn_sum(prefix + "0")) % 10)


def _iban_digits(s):
    return "".join(str(int(c, 36)) for c in s)


def iban_ok(s):
    c = re.sub(r"\s", "", s).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{8,30}", c):
        return False
    return int(_iban_digits(c[4:] + c[:4])) % 97 == 1


def make_iban(cc, bban):
    chk = 98 - int(_iban_digits(bban + cc + "00")) % 97
    return "%s%02d%s" % (cc, chk, bban)


def ean13_ok(s):
    d = [int(x) for x in s]
    return len(d) == 13 and sum(x * (1 if i % 2 == 0 else 3) for i, x in enumerate(d)) % 10 == 0


def upc_ok(s):
    d = [int(x) for x in s]
    return len(d) == 12 and sum(x * (3 if i % 2 == 0 else 1) for i, x in enumerate(d)) % 10 == 0


def aba_ok(s):
    d = [int(x) for x in s]
    return len(d) == 9 and (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8])) % 10 == 0


# ---------------------------------------------------------------------------
# character helpers
# ---------------------------------------------------------------------------
DIG = string.digits
UP = string.ascii_uppercase
LOW = string.ascii_lowercase
ALNUM = string.ascii_letters + string.digits
HEXL = "0123456789abcdef"
B64 = string.ascii_letters + string.digits + "+/"
B64URL = string.ascii_letters + string.digits + "-_"


def rs(rng, alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


def rdig(rng, n):
    return "".join(rng.choice(DIG) for _ in range(n))


def looks_random(s):
    """Reject strings that are too regular to pass for random key material."""
    if len(s) < 8:
        return True
    if max(Counter(s).values()) > max(4, len(s) // 6):
        return False
    if re.search(r"(.)\1\1\1", s):
        return False
    return True


def rtoken(rng, alphabet, n, need_mix=True):
    while True:
        s = rs(rng, alphabet, n)
        if not looks_random(s):
            continue
        if need_mix and n >= 16:
            kinds = sum([any(c.isdigit() for c in s), any(c.isupper() for c in s), any(c.islower() for c in s)])
            expected = sum([any(c.isdigit() for c in alphabet), any(c.isupper() for c in alphabet), any(c.islower() for c in alphabet)])
            if kinds < expected:
                continue
        return s


TRANS = {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "é": "e", "è": "e", "ê": "e", "ë": "e",
         "à": "a", "â": "a", "á": "a", "ã": "a", "ç": "c", "í": "i", "ì": "i", "î": "i", "ï": "i",
         "ó": "o", "ò": "o", "ô": "o", "õ": "o", "ú": "u", "ù": "u", "û": "u", "ñ": "n", "ł": "l",
         "ń": "n", "ś": "s", "ź": "z", "ż": "z", "ą": "a", "ę": "e", "ć": "c", "ı": "i", "ğ": "g", "ş": "s", "'": "", " ": "", "-": ""}


def translit(s):
    return "".join(TRANS.get(ch, ch) for ch in s.lower())


def group(s, n=4, sep=" "):
    return sep.join(s[i:i + n] for i in range(0, len(s), n))

# ---------------------------------------------------------------------------
# locale data (hand written)
# ---------------------------------------------------------------------------
LOCALES = ["en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "nl-NL", "it-IT", "pl-PL", "pt-BR", "en-IN", "en-AU"]

NAMES = {
    "en-US": ("James Maria Tyler Jennifer Marcus Ashley Kevin Brittany Daniel Keisha Robert Megan Luis Hannah Derek "
              "Samantha Anthony Olivia Brandon Chloe Trevor Latoya Shawn Kayla",
              "Johnson Rodriguez Nguyen Patel Miller Thompson Garcia Walker Kowalski Brooks Sullivan Hernandez Reed "
              "Bennett Coleman Foster Kim Ramirez Murphy Price Washington Holloway Dunn Castillo"),
    "en-GB": ("Oliver Amelia Harry Sophie George Charlotte Jack Emily Thomas Lucy William Hannah Callum Freya Rhys "
              "Niamh Alfie Poppy Euan Imogen Gareth Siobhan",
              "Smith Jones Taylor Brown Davies Evans Wilson Thomas Roberts Hughes Wright Clarke Hall Green Wood Harris "
              "Patel Khan MacDonald O'Brien Pritchard Ashworth"),
    "de-DE": ("Lukas Anna Jonas Lea Felix Marie Maximilian Sophie Tobias Laura Jan Katharina Stefan Sabine Jürgen "
              "Ursula Niklas Hannah Florian Julia Dieter Heike Ömer Birgit",
              "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Koch Bauer Richter Klein Wolf "
              "Schröder Neumann Schwarz Zimmermann Braun Krüger Yılmaz Hartmann Vogel"),
    "fr-FR": ("Camille Lucas Léa Hugo Manon Louis Chloé Gabriel Inès Théo Sarah Nathan Julie Antoine Élodie Mathieu "
              "Pauline Julien Céline Nicolas Karim Sandrine",
              "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent Lefèvre Michel "
              "Garcia David Bertrand Roux Vincent Fournier Benali Mercier"),
    "es-ES": ("Lucía Hugo Martina Pablo Sofía Alejandro Paula Daniel Carmen Javier Marta Sergio Laura Álvaro Elena "
              "Jorge Nuria Adrián Irene Raúl Montserrat Íñigo",
              "García Fernández González Rodríguez López Martínez Sánchez Pérez Gómez Martín Jiménez Ruiz Hernández "
              "Díaz Moreno Muñoz Álvarez Romero Navarro Torres Etxeberria Vidal"),
    "nl-NL": ("Daan Emma Sem Julia Lucas Sophie Milan Tess Thijs Sanne Bram Lotte Ruben Fleur Jesse Anouk Stijn Eva "
              "Joris Maartje Pieter Ingrid",
              "de Jong|Jansen|de Vries|van den Berg|van Dijk|Bakker|Janssen|Visser|Smit|Meijer|de Boer|Mulder|"
              "de Groot|Bos|Vos|Peters|Hendriks|van Leeuwen|Dekker|Brouwer|Kuipers|Verhoeven"),
    "it-IT": ("Francesco Giulia Alessandro Chiara Lorenzo Martina Matteo Sara Andrea Francesca Marco Elena Luca "
              "Valentina Davide Federica Simone Alessia Giorgio Paola Salvatore Rosaria",
              "Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo Conti De_Luca Mancini "
              "Costa Giordano Rizzo Lombardi Moretti Barbieri Fontana"),
    "pl-PL": ("Jakub Anna Kacper Zuzanna Mateusz Julia Michał Maja Piotr Katarzyna Tomasz Agnieszka Paweł Magdalena "
              "Krzysztof Aleksandra Łukasz Natalia Marcin Ewa Grzegorz Małgorzata",
              "Nowak Kowalski Wiśniewski Wójcik Kowalczyk Kamiński Lewandowski Zieliński Szymański Woźniak Dąbrowski "
              "Kozłowski Jankowski Mazur Kwiatkowski Krawczyk Piotrowski Grabowski Nowicki Pawłowski Sikora Wrona"),
    "pt-BR": ("Lucas Ana Gabriel Beatriz Pedro Júlia Matheus Larissa Rafael Camila Gustavo Fernanda Thiago Mariana "
              "Felipe Letícia Bruno Amanda Rodrigo Patrícia João Francisca",
              "Silva Santos Oliveira Souza Rodrigues Ferreira Alves Pereira Lima Gomes Costa Ribeiro Martins Carvalho "
              "Almeida Lopes Barbosa Araújo Cardoso Rocha Nascimento Moura"),
    "en-IN": ("Aarav Priya Rohan Ananya Vikram Sneha Arjun Kavya Rahul Pooja Siddharth Neha Karthik Divya Aditya "
              "Meera Sanjay Lakshmi Nikhil Shreya Mohammed Fatima",
              "Sharma Verma Iyer Reddy Nair Gupta Mehta Krishnan Rao Banerjee Joshi Kulkarni Chatterjee Menon Agarwal "
              "Desai Pillai Singh Bhat Kapoor Qureshi Das"),
    "en-AU": ("Jack Charlotte Oliver Olivia William Mia Noah Ava Thomas Isla Lachlan Matilda Cooper Sienna Riley Zoe "
              "Mitchell Tahlia Brodie Kirra Hamish Georgia",
              "Smith Jones Williams Brown Wilson Taylor Nguyen Johnson Martin White Anderson Walker Thompson Kelly Ryan "
              "Campbell Harris Clarke Murphy O'Connor Papadopoulos Tran"),
}


def _split_names(s):
    return [x.replace("_", " ") for x in (s.split("|") if "|" in s else s.split())]


NAMES = {k: (_split_names(v[0]), _split_names(v[1])) for k, v in NAMES.items()}

FEMALE = set(("Maria Jennifer Ashley Brittany Keisha Megan Hannah Samantha Olivia Chloe Latoya Kayla Amelia Sophie "
              "Charlotte Emily Lucy Freya Niamh Poppy Imogen Siobhan Anna Lea Marie Laura Katharina Sabine Ursula "
              "Julia Heike Birgit Camille Léa Manon Chloé Inès Sarah Julie Élodie Pauline Céline Sandrine Lucía "
              "Martina Sofía Paula Carmen Marta Elena Nuria Irene Montserrat Emma Tess Sanne Lotte Fleur Anouk Eva "
              "Maartje Ingrid Giulia Chiara Sara Francesca Valentina Federica Alessia Paola Rosaria Zuzanna Maja "
              "Katarzyna Agnieszka Magdalena Aleksandra Natalia Ewa Małgorzata Ana Beatriz Júlia Larissa Camila "
              "Fernanda Mariana Letícia Amanda Patrícia Francisca Priya Ananya Sneha Kavya Pooja Neha Divya Meera "
              "Lakshmi Shreya Fatima Mia Ava Isla Matilda Sienna Zoe Tahlia Kirra Georgia").split())

FREEMAIL = {
    "en-US": ["gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "aol.com", "comcast.net", "proton.me"],
    "en-GB": ["gmail.com", "btinternet.com", "hotmail.co.uk", "yahoo.co.uk", "outlook.com", "sky.com", "virginmedia.com"],
    "de-DE": ["gmx.de", "web.de", "t-online.de", "gmail.com", "posteo.de", "freenet.de", "outlook.de", "gmx.net"],
    "fr-FR": ["orange.fr", "free.fr", "laposte.net", "gmail.com", "sfr.fr", "hotmail.fr", "wanadoo.fr", "yahoo.fr"],
    "es-ES": ["gmail.com", "hotmail.es", "yahoo.es", "telefonica.net", "outlook.es", "hotmail.com"],
    "nl-NL": ["ziggo.nl", "kpnmail.nl", "gmail.com", "hotmail.nl", "outlook.com", "xs4all.nl", "planet.nl", "live.nl"],
    "it-IT": ["libero.it", "gmail.com", "virgilio.it", "tiscali.it", "alice.it", "hotmail.it", "fastwebnet.it"],
    "pl-PL": ["wp.pl", "onet.pl", "o2.pl", "interia.pl", "gmail.com", "op.pl", "poczta.fm"],
    "pt-BR": ["gmail.com", "hotmail.com", "uol.com.br", "bol.com.br", "yahoo.com.br", "terra.com.br", "outlook.com"],
    "en-IN": ["gmail.com", "yahoo.co.in", "rediffmail.com", "outlook.com", "hotmail.com", "yahoo.in"],
    "en-AU": ["bigpond.com", "gmail.com", "optusnet.com.au", "outlook.com", "hotmail.com", "iinet.net.au", "icloud.com"],
}

COMPANIES = {
    "en-US": [("Brightline Logistics", "brightlinelogistics.com"), ("Cedar & Pine Outfitters", "cedarpine.co"),
              ("Halcyon Health Partners", "halcyonhealth.org"), ("Redwood Payroll Services", "redwoodpayroll.com"),
              ("Summit Ridge Credit Union", "summitridgecu.org"), ("Juniper Street Dental", "juniperstreetdental.com"),
              ("Vantage Freight", "vantagefreight.io"), ("Blue Heron Software", "blueheron.dev"),
              ("Maple Avenue Realty", "mapleaverealty.com"), ("Copperline Insurance Group", "copperlineins.com")],
    "en-GB": [("Thornbury Lettings Ltd", "thornburylettings.co.uk"), ("Kestrel Data Ltd", "kestreldata.co.uk"),
              ("Ashdown & Pryce Solicitors", "ashdownpryce.co.uk"), ("Millbrook Energy", "millbrookenergy.co.uk"),
              ("Harrow Lane Builders", "harrowlanebuilders.co.uk"), ("Fenwick & Hale Opticians", "fenwickhale.co.uk")],
    "de-DE": [("Brandt Logistik GmbH", "brandt-logistik.de"), ("Sonnenfeld Versicherung AG", "sonnenfeld-versicherung.de"),
              ("Hausverwaltung Krüger & Söhne", "hv-krueger.de"), ("Nordlicht Software GmbH", "nordlicht-software.de"),
              ("Autohaus Berger KG", "autohaus-berger.de"), ("Stadtwerke Talheim", "stadtwerke-talheim.de"),
              ("Elektro Wendt GmbH & Co. KG", "elektro-wendt.de")],
    "fr-FR": [("Atelier Lumière SAS", "atelier-lumiere.fr"), ("Transports Garnier", "transports-garnier.fr"),
              ("Cabinet Rousseau Avocats", "cabinet-rousseau.fr"), ("Immobilière du Parc", "immo-duparc.fr"),
              ("Solutions Numériques Azur", "sn-azur.fr"), ("Énergie Vallée du Rhône", "evr-energie.fr")],
    "es-ES": [("Construcciones Valverde S.L.", "valverdeconstrucciones.es"), ("Clínica Dental Sonrisa", "clinicasonrisa.es"),
              ("Gestoría Ortega", "gestoriaortega.es"), ("Muebles Albarrán S.A.", "mueblesalbarran.es"),
              ("Tecnologías Nébula S.L.", "nebulatec.es"), ("Inmobiliaria Mar Azul", "inmomarazul.es")],
    "nl-NL": [("Van der Meer Installatietechniek B.V.", "vandermeer-installatie.nl"), ("Bakkerij Hoekstra", "bakkerijhoekstra.nl"),
              ("Stroomwijzer Energie", "stroomwijzer.nl"), ("Dijkstra Advocaten", "dijkstra-advocaten.nl"),
              ("Tulpdata B.V.", "tulpdata.nl"), ("Woonstichting De Linde", "delinde-wonen.nl")],
    "it-IT": [("Officine Ferraresi S.r.l.", "officineferraresi.it"), ("Studio Legale Bellini", "studiobellini.it"),
              ("Agenzia Immobiliare Il Portico", "ilportico-immobiliare.it"), ("Farmacia San Marco", "farmaciasanmarco.it"),
              ("Lumetti Software S.r.l.", "lumetti.it"), ("Condominio Via Verdi 12", "amministrazionegalli.it")],
    "pl-PL": [("Budex Sp. z o.o.", "budex.com.pl"), ("Kancelaria Prawna Zawadzki", "kancelaria-zawadzki.pl"),
              ("Techsoft Polska Sp. z o.o.", "techsoft.pl"), ("Przychodnia Zdrowie", "przychodnia-zdrowie.pl"),
              ("Sklep Rowerowy Kolarz", "kolarz.pl"), ("Wspólnota Mieszkaniowa Leśna 7", "wm-lesna7.pl")],
    "pt-BR": [("Construtora Horizonte Ltda.", "construtorahorizonte.com.br"), ("Clínica Vida Plena", "vidaplena.med.br"),
              ("Contabilidade Silva & Rocha", "silvarocha.cnt.br"), ("Loja Pé na Areia", "penaareia.com.br"),
              ("Nuvem Azul Tecnologia", "nuvemazul.com.br"), ("Imobiliária Ipê Amarelo", "ipeamarelo.imb.br")],
    "en-IN": [("Sai Krishna Traders", "saikrishnatraders.in"), ("Vasudha Infotech Pvt Ltd", "vasudhainfotech.com"),
              ("Greenleaf Diagnostics", "greenleafdiagnostics.in"), ("Apex Realty", "apexrealty.co.in"),
              ("Nilgiri Travels", "nilgiritravels.in"), ("Kaveri Fintech Solutions", "kaverifintech.com")],
    "en-AU": [("Coastal Plumbing Pty Ltd", "coastalplumbing.com.au"), ("Banksia Legal", "banksialegal.com.au"),
              ("Southern Cross Solar", "southerncrosssolar.com.au"), ("Wattle Street Vet", "wattlestreetvet.com.au"),
              ("Kookaburra IT", "kookaburrait.com.au"), ("Red Gum Property Group", "redgumproperty.com.au")],
}

# organisations by sector, used where the sender's trade matters
ORGS = {
    "insurer": {"en-US": [("Copperline Insurance Group", "copperlineins.com"), ("Prairie Mutual", "prairiemutual.com")],
                "en-GB": [("Fenwick Assurance", "fenwickassurance.co.uk"), ("Highgate Mutual", "highgatemutual.co.uk")],
                "de-DE": [("Sonnenfeld Versicherung AG", "sonnenfeld-versicherung.de"), ("Hanseatische Hausrat VVaG", "hanseatische-hausrat.de")],
                "fr-FR": [("Mutuelle des Tilleuls", "mutuelle-tilleuls.fr"), ("Assurances Garonne", "assurances-garonne.fr")],
                "es-ES": [("Seguros Almagro", "segurosalmagro.es"), ("Mutua del Cantábrico", "mutuacantabrico.es")],
                "nl-NL": [("Polder Verzekeringen", "polderverzekeringen.nl"), ("De Zeeuwse Schadeverzekering", "zeeuwseschade.nl")],
                "it-IT": [("Assicurazioni Lario", "assicurazionilario.it"), ("Mutua Appennino", "mutuaappennino.it")],
                "pl-PL": [("Towarzystwo Ubezpieczeń Wisła S.A.", "tu-wisla.pl"), ("Ubezpieczenia Bałtyk", "ubezpieczenia-baltyk.pl")],
                "pt-BR": [("Seguradora Cerrado", "seguradoracerrado.com.br"), ("Porto Sul Seguros", "portosulseguros.com.br")],
                "en-IN": [("Ganga General Insurance", "gangageneral.in"), ("Deccan Assure", "deccanassure.co.in")],
                "en-AU": [("Eucalypt Insurance", "eucalyptinsurance.com.au"), ("Coral Coast Mutual", "coralcoastmutual.com.au")]},
    "utility": {"en-US": [("Tri-County Electric Cooperative", "tricountyelectric.coop")], "en-GB": [("Millbrook Energy", "millbrookenergy.co.uk")],
                "de-DE": [("Stadtwerke Talheim", "stadtwerke-talheim.de")], "fr-FR": [("Énergie Vallée du Rhône", "evr-energie.fr")],
                "es-ES": [("Eléctrica del Segura", "electricadelsegura.es")], "nl-NL": [("Stroomwijzer Energie", "stroomwijzer.nl")],
                "it-IT": [("Energia Valtellina", "energiavaltellina.it")], "pl-PL": [("Energa Pomorze Obrót", "pomorze-obrot.pl")],
                "pt-BR": [("Companhia Energética do Vale", "cevale.com.br")], "en-IN": [("Malabar Power Distribution", "malabarpower.in")],
                "en-AU": [("Southern Cross Energy", "southerncrossenergy.com.au")]},
    "landlord": {"en-US": [("Maple Avenue Realty", "mapleaverealty.com"), ("Brookside Property Management", "brooksidepm.com")],
                 "en-GB": [("Thornbury Lettings Ltd", "thornburylettings.co.uk")],
                 "de-DE": [("Hausverwaltung Krüger & Söhne", "hv-krueger.de"), ("Wohnbau Nordstadt eG", "wohnbau-nordstadt.de")],
                 "fr-FR": [("Immobilière du Parc", "immo-duparc.fr"), ("Gestion Locative Rhône", "gestion-locative-rhone.fr")],
                 "es-ES": [("Inmobiliaria Mar Azul", "inmomarazul.es"), ("Administración de Fincas Ortega", "fincasortega.es")],
                 "nl-NL": [("Woonstichting De Linde", "delinde-wonen.nl"), ("Verhuurbeheer Amstel", "verhuurbeheeramstel.nl")],
                 "it-IT": [("Agenzia Immobiliare Il Portico", "ilportico-immobiliare.it"), ("Immobiliare Navigli", "immobiliarenavigli.it")],
                 "pl-PL": [("Zarząd Nieruchomości Stare Miasto", "zn-staremiasto.pl"), ("Wspólnota Mieszkaniowa Leśna 7", "wm-lesna7.pl")],
                 "pt-BR": [("Imobiliária Ipê Amarelo", "ipeamarelo.imb.br")]},
    "lender": {"en-US": [("Summit Ridge Credit Union", "summitridgecu.org"), ("Keystone Home Lending", "keystonehomelending.com")]},
    "clinic": {"en-US": [("Halcyon Health Partners", "halcyonhealth.org"), ("Juniper Street Dental", "juniperstreetdental.com"),
                         ("Lakeview Family Medicine", "lakeviewfamilymed.com")]},
    "hotel": {"en-US": [("The Harborline Hotel", "harborlinehotel.com")], "en-GB": [("The Old Rectory Hotel", "oldrectoryhotel.co.uk")],
              "de-DE": [("Hotel Lindenhof", "hotel-lindenhof.de")], "fr-FR": [("Hôtel des Remparts", "hotel-remparts.fr")],
              "es-ES": [("Hostal La Alameda", "hostallaalameda.es")], "nl-NL": [("Hotel De Waag", "hoteldewaag.nl")],
              "it-IT": [("Albergo Bellavista", "albergobellavista.it")], "pl-PL": [("Hotel Pod Różą", "hotelpodroza.pl")],
              "pt-BR": [("Pousada Maré Alta", "pousadamarealta.com.br")], "en-IN": [("Hotel Sea Breeze", "hotelseabreeze.in")],
              "en-AU": [("The Jetty Motel", "jettymotel.com.au")]},
    "shop": {"en-US": [("Cedar & Pine Outfitters", "cedarpine.co"), ("Harvest Lane Market", "harvestlanemarket.com")],
             "en-GB": [("Fenwick & Hale Opticians", "fenwickhale.co.uk"), ("Corner Larder", "cornerlarder.co.uk")],
             "de-DE": [("Fahrradhaus Vogel", "fahrradhaus-vogel.de"), ("Bio-Markt Sonnenblume", "biomarkt-sonnenblume.de")],
             "fr-FR": [("Atelier Lumière SAS", "atelier-lumiere.fr"), ("Épicerie du Parc", "epicerie-duparc.fr")],
             "es-ES": [("Muebles Albarrán S.A.", "mueblesalbarran.es"), ("Ferretería Ortega", "ferreteriaortega.es")],
             "nl-NL": [("Bakkerij Hoekstra", "bakkerijhoekstra.nl"), ("Fietsenwinkel De Spaak", "despaak.nl")],
             "it-IT": [("Farmacia San Marco", "farmaciasanmarco.it"), ("Ferramenta Lombardi", "ferramentalombardi.it")],
             "pl-PL": [("Sklep Rowerowy Kolarz", "kolarz.pl"), ("Delikatesy Pod Lipami", "podlipami.pl")],
             "pt-BR": [("Loja Pé na Areia", "penaareia.com.br"), ("Empório Serra Verde", "emporioserraverde.com.br")],
             "en-IN": [("Sai Krishna Traders", "saikrishnatraders.in"), ("Kala Handlooms", "kalahandlooms.in")],
             "en-AU": [("Kookaburra IT", "kookaburrait.com.au"), ("Saltbush Providores", "saltbushprovidores.com.au")]},
}

ROLE = {
    "en": {"support": ["support", "help", "customercare", "service"], "billing": ["billing", "accounts", "invoices"],
           "info": ["info", "hello", "contact", "enquiries"], "hr": ["hr", "payroll", "people", "careers"],
           "noreply": ["noreply", "no-reply", "notifications"], "it": ["it-support", "servicedesk", "helpdesk"]},
    "de": {"support": ["service", "kundenservice", "support"], "billing": ["buchhaltung", "rechnung", "rechnungswesen"],
           "info": ["info", "kontakt", "post"], "hr": ["personal", "bewerbung", "hr"], "noreply": ["noreply", "no-reply"],
           "it": ["it-service", "helpdesk"]},
    "fr": {"support": ["service-client", "support", "sav"], "billing": ["comptabilite", "facturation"],
           "info": ["contact", "info", "accueil"], "hr": ["rh", "recrutement"], "noreply": ["ne-pas-repondre", "noreply"],
           "it": ["support-informatique", "helpdesk"]},
    "es": {"support": ["atencionalcliente", "soporte", "clientes"], "billing": ["facturacion", "administracion"],
           "info": ["info", "contacto", "hola"], "hr": ["rrhh", "empleo"], "noreply": ["noreply", "no-responder"],
           "it": ["soporte-it", "sistemas"]},
    "nl": {"support": ["klantenservice", "support", "service"], "billing": ["administratie", "facturen", "debiteuren"],
           "info": ["info", "contact"], "hr": ["hr", "personeelszaken", "vacatures"], "noreply": ["noreply", "geen-antwoord"],
           "it": ["servicedesk", "ict"]},
    "it": {"support": ["assistenza", "supporto", "clienti"], "billing": ["amministrazione", "fatturazione", "contabilita"],
           "info": ["info", "segreteria"], "hr": ["risorseumane", "lavora-con-noi"], "noreply": ["noreply", "non-rispondere"],
           "it": ["helpdesk", "sistemi"]},
    "pl": {"support": ["obsluga", "pomoc", "bok"], "billing": ["faktury", "ksiegowosc"], "info": ["biuro", "kontakt", "info"],
           "hr": ["kadry", "rekrutacja"], "noreply": ["noreply", "nie-odpowiadaj"], "it": ["helpdesk", "it"]},
    "pt": {"support": ["atendimento", "sac", "suporte"], "billing": ["financeiro", "cobranca"], "info": ["contato", "ola"],
           "hr": ["rh", "vagas"], "noreply": ["naoresponda", "noreply"], "it": ["ti", "suporte-ti"]},
}

ADDR = {
    "en-US": (["Willow Creek Dr", "Maple St", "Oak Hollow Ln", "W 34th St", "Mission St", "Peachtree Rd NE",
               "N Lincoln Ave", "Elm Ridge Ct", "Sunset Blvd", "Harbor View Rd"],
              [("Austin", "TX", "78745"), ("Denver", "CO", "80211"), ("Columbus", "OH", "43215"), ("Portland", "OR", "97214"),
               ("Raleigh", "NC", "27609"), ("Tampa", "FL", "33602"), ("Madison", "WI", "53703"), ("Phoenix", "AZ", "85016"),
               ("Brooklyn", "NY", "11215"), ("San Jose", "CA", "95112")]),
    "en-GB": (["Marlborough Road", "Station Approach", "Church Lane", "Victoria Street", "Kingsway", "Mill Lane",
               "Albert Terrace", "Queens Drive", "The Crescent", "Ashgrove Avenue"],
              [("Leeds", "LS6 2AB"), ("Manchester", "M14 5RJ"), ("Bristol", "BS7 8QD"), ("London", "SE15 4TL"),
               ("Glasgow", "G12 8QQ"), ("Cardiff", "CF24 3DG"), ("Norwich", "NR2 3HW"), ("Sheffield", "S10 2GB")]),
    "de-DE": (["Lindenstraße", "Hauptstraße", "Am Mühlbach", "Goethestraße", "Bahnhofstraße", "Kastanienallee",
               "Schillerplatz", "Gartenweg", "Rosenheimer Straße", "Friedrich-Ebert-Ring"],
              [("Berlin", "10115"), ("München", "81667"), ("Hamburg", "22765"), ("Köln", "50667"), ("Leipzig", "04109"),
               ("Stuttgart", "70176"), ("Frankfurt am Main", "60318"), ("Dresden", "01097"), ("Bremen", "28195")]),
    "fr-FR": (["rue des Lilas", "avenue Jean Jaurès", "boulevard Voltaire", "rue de la République", "place du Marché",
               "chemin des Vignes", "rue Victor Hugo", "allée des Tilleuls", "quai de la Loire"],
              [("Lyon", "69003"), ("Paris", "75011"), ("Marseille", "13006"), ("Toulouse", "31000"), ("Nantes", "44000"),
               ("Bordeaux", "33000"), ("Lille", "59000"), ("Strasbourg", "67000"), ("Montpellier", "34000")]),
    "es-ES": (["Calle Mayor", "Avenida de la Constitución", "Calle de Alcalá", "Paseo de Gracia", "Calle Sierpes",
               "Avenida del Puerto", "Calle San Vicente", "Plaza de España", "Calle Real"],
              [("Madrid", "28013"), ("Barcelona", "08007"), ("Valencia", "46002"), ("Sevilla", "41004"), ("Bilbao", "48001"),
               ("Zaragoza", "50001"), ("Málaga", "29015"), ("A Coruña", "15003")]),
    "nl-NL": (["Prinsengracht", "Kerkstraat", "Dorpsstraat", "Stationsweg", "Molenweg", "Wilhelminalaan",
               "Oudegracht", "Nieuwe Binnenweg", "Beatrixstraat"],
              [("Amsterdam", "1016 GV"), ("Utrecht", "3511 AB"), ("Rotterdam", "3015 CJ"), ("Den Haag", "2514 EA"),
               ("Eindhoven", "5611 AZ"), ("Groningen", "9711 LM"), ("Nijmegen", "6511 KA"), ("Haarlem", "2011 RG")]),
    "it-IT": (["Via Garibaldi", "Corso Vittorio Emanuele II", "Via Roma", "Piazza della Repubblica", "Via dei Mille",
               "Viale Mazzini", "Via Cavour", "Via San Francesco", "Largo Augusto"],
              [("Milano", "20121", "MI"), ("Roma", "00185", "RM"), ("Torino", "10123", "TO"), ("Bologna", "40126", "BO"),
               ("Napoli", "80134", "NA"), ("Firenze", "50123", "FI"), ("Genova", "16121", "GE"), ("Padova", "35122", "PD")]),
    "pl-PL": (["ul. Marszałkowska", "ul. Długa", "ul. Kwiatowa", "al. Jerozolimskie", "ul. Piotrkowska",
               "ul. Floriańska", "ul. Ogrodowa", "ul. Słoneczna", "os. Piastowskie"],
              [("Warszawa", "00-514"), ("Kraków", "31-019"), ("Łódź", "90-001"), ("Wrocław", "50-001"),
               ("Poznań", "61-758"), ("Gdańsk", "80-831"), ("Lublin", "20-001"), ("Katowice", "40-001")]),
    "pt-BR": (["Rua das Flores", "Avenida Paulista", "Rua Augusta", "Avenida Atlântica", "Rua XV de Novembro",
               "Rua da Bahia", "Avenida Sete de Setembro", "Rua Padre Chagas", "Alameda Santos"],
              [("São Paulo", "SP", "01310-100"), ("Rio de Janeiro", "RJ", "22021-001"), ("Belo Horizonte", "MG", "30130-170"),
               ("Curitiba", "PR", "80020-310"), ("Porto Alegre", "RS", "90570-020"), ("Salvador", "BA", "40020-000"),
               ("Recife", "PE", "50030-230"), ("Fortaleza", "CE", "60165-121")]),
    "en-IN": (["14th Cross, Indiranagar", "MG Road", "Linking Road, Bandra West", "Anna Salai", "Banjara Hills Road No. 12",
               "Sector 18", "FC Road, Shivajinagar", "Park Street", "Koramangala 5th Block"],
              [("Bengaluru", "560038"), ("Mumbai", "400050"), ("Chennai", "600002"), ("Hyderabad", "500034"),
               ("Noida", "201301"), ("Pune", "411005"), ("Kolkata", "700016"), ("Kochi", "682016")]),
    "en-AU": (["Wattle Street", "George Street", "Beach Road", "Brunswick Street", "Bridge Road", "Stirling Highway",
               "Ann Street", "Chapel Street", "Pacific Highway"],
              [("Fitzroy", "VIC", "3065"), ("Surry Hills", "NSW", "2010"), ("Fortitude Valley", "QLD", "4006"),
               ("Fremantle", "WA", "6160"), ("Glenelg", "SA", "5045"), ("Newtown", "NSW", "2042"),
               ("Hobart", "TAS", "7000"), ("Braddon", "ACT", "2612")]),
}

# ---------------------------------------------------------------------------
# telephone numbers: (national significant number parts) + locale formats
# ---------------------------------------------------------------------------
US_AREAS = ["212", "312", "415", "617", "206", "303", "512", "702", "919", "404", "503", "612", "713", "813",
            "214", "646", "720", "773", "858", "971", "602", "614", "608", "408", "347"]
GB_DRAMA_GEO = ["113", "114", "115", "116", "117", "118", "121", "131", "141", "151", "161"]


def _nxx(rng):
    while True:
        x = str(rng.randint(2, 9)) + rdig(rng, 2)
        if x[1:] != "11" and x != "555":
            return x


class Phone:
    """One telephone number; can be rendered in the formats people use."""

    def __init__(self, loc, kind, cc, parts, trunk="0"):
        self.loc, self.kind, self.cc, self.parts, self.trunk = loc, kind, cc, parts, trunk

    @property
    def nsn(self):
        return "".join(self.parts)

    def e164(self):
        return "+" + self.cc + self.nsn

    def fmt(self, rng, style):
        loc, p, k = self.loc, self.parts, self.kind
        if style == "e164":
            return self.e164()
        if style == "compact":
            if loc == "en-US" or self.trunk == "":
                return self.nsn
            return "0" + self.nsn
        f = PHONE_FORMATS[loc](p, k)
        opts = f[style]
        return rng.choice(opts)


def gen_phone(rng, loc, kind=None):
    if kind is None:
        kind = "mob" if rng.random() < 0.5 else "land"
    if loc == "en-US":
        area = rng.choice(US_AREAS)
        if rng.random() < 0.6:
            return Phone(loc, kind, "1", [area, "555", "01" + rdig(rng, 2)], trunk="1")
        return Phone(loc, kind, "1", [area, _nxx(rng), rdig(rng, 4)], trunk="1")
    if loc == "en-GB":
        if kind == "mob":
            if rng.random() < 0.6:
                return Phone(loc, kind, "44", ["7700", "900" + rdig(rng, 3)])
            return Phone(loc, kind, "44", ["7" + rng.choice("1234579") + rdig(rng, 2), rdig(rng, 6)])
        if rng.random() < 0.5:
            return Phone(loc, kind, "44", ["20", "7946", "0" + rdig(rng, 3)])
        if rng.random() < 0.6:
            return Phone(loc, kind, "44", [rng.choice(GB_DRAMA_GEO), "496", "0" + rdig(rng, 3)])
        return Phone(loc, kind, "44", ["20", rng.choice("378") + rdig(rng, 3), rdig(rng, 4)])
    if loc == "de-DE":
        if kind == "mob":
            pre = rng.choice(["151", "152", "157", "160", "162", "170", "171", "172", "173", "174", "175", "176", "177", "178", "179"])
            return Phone(loc, kind, "49", [pre, str(rng.randint(1, 9)) + rdig(rng, 6 if pre[:2] in ("17", "16") else 7)])
        area, n = rng.choice([("30", 8), ("40", 8), ("69", 8), ("89", 8), ("221", 7), ("211", 7), ("711", 7),
                              ("341", 7), ("351", 7), ("511", 7), ("911", 7), ("421", 7), ("6221", 6), ("7531", 6)])
        return Phone(loc, kind, "49", [area, str(rng.randint(2, 9)) + rdig(rng, n - 1)])
    if loc == "fr-FR":
        if kind == "mob":
            if rng.random() < 0.3:
                return Phone(loc, kind, "33", ["6", "39", "98", rdig(rng, 2), rdig(rng, 2)])
            first = rng.choice(["6", "6", "7"])
            second = (str(rng.randint(0, 9)) if first == "6" else str(rng.randint(3, 8))) + rdig(rng, 1)
            return Phone(loc, kind, "33", [first, second, rdig(rng, 2), rdig(rng, 2), rdig(rng, 2)])
        if rng.random() < 0.3:
            z, b = rng.choice([("1", "99 00"), ("2", "61 91"), ("3", "53 01"), ("4", "65 71"), ("5", "36 49")])
            b1, b2 = b.split()
            return Phone(loc, kind, "33", [z, b1, b2, rdig(rng, 2), rdig(rng, 2)])
        z = rng.choice("12345")
        return Phone(loc, kind, "33", [z, str(rng.randint(2, 9)) + rdig(rng, 1), rdig(rng, 2), rdig(rng, 2), rdig(rng, 2)])
    if loc == "es-ES":
        if kind == "mob":
            pre = "6" + rdig(rng, 2) if rng.random() < 0.8 else "7" + rng.choice("1234") + rdig(rng, 1)
            return Phone(loc, kind, "34", [pre, rdig(rng, 6)])
        a = rng.choice(["91", "93", "96", "954", "944", "976", "981", "958"])
        return Phone(loc, kind, "34", [a, str(rng.randint(2, 8)) + rdig(rng, 9 - len(a) - 1)])
    if loc == "nl-NL":
        if kind == "mob":
            return Phone(loc, kind, "31", ["6", str(rng.randint(1, 5)) + rdig(rng, 7)])
        a = rng.choice(["20", "10", "70", "30", "40", "50", "24", "43", "172", "318", "513", "165"])
        return Phone(loc, kind, "31", [a, str(rng.randint(2, 8)) + rdig(rng, 8 - len(a))])
    if loc == "it-IT":
        if kind == "mob":
            pre = rng.choice(["320", "328", "329", "333", "335", "338", "339", "340", "345", "347", "348", "349", "366", "380", "388", "392", "393"])
            return Phone(loc, kind, "39", [pre, rdig(rng, 7)], trunk="")
        a, n = rng.choice([("02", 8), ("06", 8), ("011", 7), ("055", 7), ("051", 7), ("081", 7), ("010", 7), ("041", 7), ("049", 7)])
        return Phone(loc, kind, "39", [a, str(rng.randint(2, 9)) + rdig(rng, n - 1)], trunk="")
    if loc == "pl-PL":
        if kind == "mob":
            pre = rng.choice(["50", "51", "53", "57", "60", "66", "69", "72", "78", "79", "88"]) + rdig(rng, 1)
            return Phone(loc, kind, "48", [pre, rdig(rng, 3), rdig(rng, 3)], trunk="")
        a = rng.choice(["22", "12", "61", "71", "58", "42", "32", "81"])
        return Phone(loc, kind, "48", [a, str(rng.randint(2, 8)) + rdig(rng, 2), rdig(rng, 2), rdig(rng, 2)], trunk="")
    if loc == "pt-BR":
        ddd = rng.choice(["11", "21", "31", "41", "51", "61", "71", "81", "85", "19", "48", "27"])
        if kind == "mob":
            return Phone(loc, kind, "55", [ddd, "9" + str(rng.randint(6, 9)) + rdig(rng, 3), rdig(rng, 4)])
        return Phone(loc, kind, "55", [ddd, str(rng.randint(2, 5)) + rdig(rng, 3), rdig(rng, 4)])
    if loc == "en-IN":
        if kind == "mob":
            return Phone(loc, kind, "91", [str(rng.randint(6, 9)) + rdig(rng, 4), rdig(rng, 5)])
        a = rng.choice(["22", "11", "80", "44", "40", "33", "20"])
        return Phone(loc, kind, "91", [a, str(rng.randint(2, 6)) + rdig(rng, 3), rdig(rng, 4)])
    if loc == "en-AU":
        if kind == "mob":
            if rng.random() < 0.4:
                return Phone(loc, kind, "61", ["491", "57" + rdig(rng, 1), rdig(rng, 3)])
            return Phone(loc, kind, "61", ["4" + rng.choice(["0", "1", "2", "3", "5", "6", "7", "8"]) + rdig(rng, 1), rdig(rng, 3), rdig(rng, 3)])
        a = rng.choice("2378")
        mid = rng.choice(["5550", "7010"])
        return Phone(loc, kind, "61", [a, mid, rdig(rng, 4)])
    raise KeyError(loc)


def _pf_us(p, k):
    a, b, c = p
    return {"local": [f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"({a}) {b}-{c}", f"1-{a}-{b}-{c}", f"{a}-{b}-{c}"],
            "intl": [f"+1 {a}-{b}-{c}", f"+1 ({a}) {b}-{c}", f"+1 {a} {b} {c}", f"+1-{a}-{b}-{c}"]}


def _pf_gb(p, k):
    if len(p) == 2:  # mobile
        a, b = p
        return {"local": [f"0{a} {b}", f"0{a} {b}", f"0{a}{b}", f"0{a} {b[:3]} {b[3:]}"],
                "intl": [f"+44 {a} {b}", f"+44 (0){a} {b}", f"+44{a}{b}", f"+44 {a} {b[:3]} {b[3:]}"]}
    a, b, c = p
    return {"local": [f"0{a} {b} {c}", f"(0{a}) {b} {c}", f"0{a} {b}{c}" if len(a) == 2 else f"0{a} {b} {c}"],
            "intl": [f"+44 {a} {b} {c}", f"+44 (0){a} {b} {c}", f"+44 (0) {a} {b} {c}"]}


def _g(s):  # German/Dutch style grouping of a subscriber number
    if len(s) == 8:
        return s[:4] + " " + s[4:]
    if len(s) == 7:
        return s[:3] + " " + s[3:]
    if len(s) == 6:
        return s[:3] + " " + s[3:]
    return s


def _pf_de(p, k):
    a, s = p
    if k == "mob":
        return {"local": [f"0{a} {s}", f"0{a}/{s}", f"0{a}-{s}", f"0{a} {_g(s)}", f"0{a} {s}"],
                "intl": [f"+49 {a} {s}", f"+49 (0){a} {s}", f"+49 {a} {_g(s)}", f"0049 {a} {s}"]}
    return {"local": [f"0{a} {s}", f"0{a}/{s}", f"(0{a}) {_g(s)}", f"0{a}-{s}", f"0{a} {_g(s)}", f"0{a} {s[:-2]}-{s[-2:]}"],
            "intl": [f"+49 {a} {s}", f"+49 (0){a} {s}", f"+49 {a} {_g(s)}", f"+49-{a}-{s}", f"+49 {a} {s[:-1]}-{s[-1]}"]}


def _pf_fr(p, k):
    z = p[0]
    rest = p[1:]
    return {"local": ["0" + z + " " + " ".join(rest), "0" + z + "." + ".".join(rest), "0" + z + "".join(rest),
                      "0" + z + " " + " ".join(rest), "0" + z + "-" + "-".join(rest)],
            "intl": ["+33 " + z + " " + " ".join(rest), "+33 (0)" + z + " " + " ".join(rest), "+33" + z + "".join(rest),
                     "0033 " + z + " " + " ".join(rest)]}


def _pf_es(p, k):
    n = "".join(p)
    if k == "mob":
        loc = [f"{n[:3]} {n[3:6]} {n[6:]}", f"{n[:3]} {n[3:5]} {n[5:7]} {n[7:]}", n, f"{n[:3]} {n[3:6]} {n[6:]}"]
    else:
        loc = [f"{n[:3]} {n[3:6]} {n[6:]}", f"{n[:2]} {n[2:5]} {n[5:7]} {n[7:]}" if len(p[0]) == 2 else f"{n[:3]} {n[3:5]} {n[5:7]} {n[7:]}", n]
    return {"local": loc, "intl": ["+34 " + x for x in loc[:2]] + ["(+34) " + loc[0], "0034 " + loc[0], "+34" + n]}


def _pf_nl(p, k):
    a, s = p
    if k == "mob":
        return {"local": [f"06-{s}", f"06 {s[:4]} {s[4:]}", f"06 {s[:2]} {s[2:4]} {s[4:6]} {s[6:]}", f"06 {s}", f"06-{s[:4]} {s[4:]}"],
                "intl": [f"+31 6 {s}", f"+31 6 {s[:4]} {s[4:]}", f"+31 (0)6 {s}", f"0031 6 {s}", f"+316{s}"]}
    sg = f"{s[:3]} {s[3:]}" if len(s) == 7 else f"{s[:2]} {s[2:4]} {s[4:]}"
    return {"local": [f"0{a}-{s}", f"0{a} {sg}", f"(0{a}) {sg}", f"0{a} {s}"],
            "intl": [f"+31 {a} {sg}", f"+31 (0){a} {s}", f"+31 {a} {s}", f"0031 {a} {s}"]}


def _pf_it(p, k):
    a, s = p
    if k == "mob":
        loc = [f"{a} {s[:3]} {s[3:]}", f"{a} {s}", f"{a}-{s}", f"{a}{s}", f"{a}/{s}"]
    else:
        sg = f"{s[:4]} {s[4:]}" if len(s) == 8 else f"{s[:3]} {s[3:]}"
        loc = [f"{a} {sg}", f"{a} {s}", f"{a}-{s}", f"{a}/{s}", f"{a}{s}"]
    return {"local": loc, "intl": ["+39 " + loc[0], "+39 " + loc[1], "0039 " + loc[1], "+39" + a + s, "(+39) " + loc[0]]}


def _pf_pl(p, k):
    if k == "mob":
        a, b, c = p
        loc = [f"{a} {b} {c}", f"{a}-{b}-{c}", f"{a}{b}{c}", f"{a} {b} {c}"]
    else:
        a, b, c, d = p
        loc = [f"{a} {b} {c} {d}", f"({a}) {b} {c} {d}", f"{a} {b}{c}{d}", f"{a} {b}-{c}-{d}"]
    return {"local": loc, "intl": ["+48 " + loc[0], "+48 " + loc[1], "+48" + "".join(p), "(+48) " + loc[0], "0048 " + loc[0]]}


def _pf_br(p, k):
    d, a, b = p
    loc = [f"({d}) {a}-{b}", f"{d} {a}-{b}", f"({d}) {a}-{b}", f"{d}{a}{b}"]
    if k == "mob":
        loc.append(f"({d}) {a[0]} {a[1:]}-{b}")
    return {"local": loc, "intl": [f"+55 {d} {a}-{b}", f"+55 ({d}) {a}-{b}", f"+55{d}{a}{b}", f"+55 {d} {a} {b}"]}


def _pf_in(p, k):
    if k == "mob":
        a, b = p
        n = a + b
        loc = [f"{a} {b}", n, "0" + n, f"{n[:3]}-{n[3:6]}-{n[6:]}", f"{a} {b}"]
        return {"local": loc, "intl": [f"+91 {a} {b}", f"+91-{n}", f"+91 {n}", f"+91 {n[:3]} {n[3:6]} {n[6:]}", f"0091 {a} {b}", f"+91 {a}-{b}"]}
    a, b, c = p
    return {"local": [f"0{a} {b} {c}", f"0{a}-{b}{c}", f"(0{a}) {b} {c}", f"0{a}-{b}-{c}"],
            "intl": [f"+91 {a} {b} {c}", f"+91-{a}-{b}{c}", f"+91 {a} {b}{c}"]}


def _pf_au(p, k):
    if k == "mob":
        a, b, c = p
        return {"local": [f"0{a} {b} {c}", f"0{a}{b}{c}", f"0{a} {b}{c}", f"0{a} {b} {c}"],
                "intl": [f"+61 {a} {b} {c}", f"+61{a}{b}{c}", f"+61 {a[0]} {a[1:]}{b[:2]} {b[2]}{c}"]}
    a, b, c = p
    return {"local": [f"(0{a}) {b} {c}", f"0{a} {b} {c}", f"0{a}{b}{c}", f"(0{a}) {b} {c}"],
            "intl": [f"+61 {a} {b} {c}", f"+61 (0){a} {b} {c}", f"+61{a}{b}{c}"]}


PHONE_FORMATS = {"en-US": _pf_us, "en-GB": _pf_gb, "de-DE": _pf_de, "fr-FR": _pf_fr, "es-ES": _pf_es, "nl-NL": _pf_nl,
                 "it-IT": _pf_it, "pl-PL": _pf_pl, "pt-BR": _pf_br, "en-IN": _pf_in, "en-AU": _pf_au}

# ---------------------------------------------------------------------------
# payment cards
# ---------------------------------------------------------------------------
# Public test numbers published in payment-provider documentation.  They are
# never produced as entities; they are planted as hard negatives in
# developer-documentation contexts only.
TEST_CARDS = ["4242424242424242", "4000056655665556", "5555555555554444", "2223003122003222", "5200828282828210",
              "5105105105105100", "378282246310005", "371449635398431", "6011111111111117", "6011000990139424",
              "3056930009020004", "36227206271667", "3566002020360505", "6200000000000005", "4111111111111111",
              "4012888888881881", "4000000000000002", "4000000000009995", "4000002500003155", "4000002760003184",
              "5454545454545454", "4035501000000008", "5500000000000004", "4000000000000077"]
TEST_CARDS = [c for c in TEST_CARDS if luhn_ok(c)]

NETWORKS = {
    # name: (list of prefixes, length choices)
    "visa": (["4"], [16, 16, 16, 16, 16, 19]),
    "mastercard": (["51", "52", "53", "54", "55", "2221", "2300", "2520", "2645", "2720"], [16]),
    "amex": (["34", "37"], [15]),
    "discover": (["6011", "644", "645", "649", "65"], [16]),
    "jcb": (["3528", "3530", "3540", "3566", "3589"], [16]),
    "diners": (["36", "300", "305", "38"], [14]),
    "unionpay": (["62"], [16, 19]),
    "maestro": (["5018", "5020", "5038", "6304", "6759", "6761", "6763"], [16, 19]),
    "rupay": (["60", "6521", "6522", "508"], [16]),
    "elo": (["636368", "504175", "438935", "451416", "636297"], [16]),
    "hipercard": (["606282"], [16]),
}
CARD_MIX = {
    "en-US": ["visa"] * 5 + ["mastercard"] * 4 + ["amex"] * 2 + ["discover"] * 2 + ["jcb", "diners"],
    "en-IN": ["visa"] * 4 + ["mastercard"] * 3 + ["rupay"] * 3 + ["amex"],
    "pt-BR": ["visa"] * 4 + ["mastercard"] * 4 + ["elo"] * 2 + ["hipercard", "amex"],
    "default": ["visa"] * 5 + ["mastercard"] * 5 + ["amex"] * 2 + ["maestro"] * 2 + ["jcb", "diners", "unionpay", "discover"],
}


def gen_card(rng, loc, network=None):
    if network is None:
        network = rng.choice(CARD_MIX.get(loc, CARD_MIX["default"]))
    prefixes, lengths = NETWORKS[network]
    while True:
        pre = rng.choice(prefixes)
        n = rng.choice(lengths)
        num = luhn_complete(pre + rdig(rng, n - len(pre) - 1))
        if num in TEST_CARDS or re.search(r"(\d)\1\1\1\1", num) or len(set(num)) < 6:
            continue
        return network, num


def fmt_card(rng, network, num, style=None):
    if style is None:
        style = rng.choice(["space", "space", "space", "dash", "compact", "compact"])
    if style == "compact":
        return num
    sep = " " if style == "space" else "-"
    if len(num) == 15:
        parts = [num[:4], num[4:10], num[10:]]
    elif len(num) == 14:
        parts = [num[:4], num[4:10], num[10:]]
    elif len(num) == 19 and network in ("unionpay", "maestro") and rng.random() < 0.4:
        parts = [num[:6], num[6:]]
    else:
        parts = [num[i:i + 4] for i in range(0, len(num), 4)]
    return sep.join(parts)


# ---------------------------------------------------------------------------
# IBAN
# ---------------------------------------------------------------------------

def _fr_rib_key(bank, branch, acct):
    return "%02d" % (97 - ((89 * int(bank) + 15 * int(branch) + 3 * int(acct)) % 97))


def _es_dc(s10):
    w = [1, 2, 4, 8, 5, 10, 9, 7, 3, 6]
    r = 11 - sum(int(d) * w[i] for i, d in enumerate(s10)) % 11
    return str({11: 0, 10: 1}.get(r, r))


_IT_ODD = [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23]


def _it_cin(s):
    tot = 0
    for i, ch in enumerate(s):
        v = int(ch) if ch.isdigit() else ord(ch) - 65
        tot += _IT_ODD[v] if i % 2 == 0 else v
    return chr(65 + tot % 26)


def _nl_account(rng):
    while True:
        a = rdig(rng, 10) if rng.random() < 0.5 else "0" + rdig(rng, 9)
        if sum(int(d) * (10 - i) for i, d in enumerate(a)) % 11 == 0 and len(set(a)) > 4:
            return a


def _pl_sort(rng):
    bank = rng.choice(["1020", "1140", "1050", "1090", "1240", "1160", "1320", "1870"])
    br = bank + rdig(rng, 3)
    w = [3, 9, 7, 1, 3, 9, 7]
    return br + str((10 - sum(int(d) * w[i] for i, d in enumerate(br)) % 10) % 10)


def gen_bban(rng, cc):
    if cc == "DE":
        blz = rng.choice(["10010010", "37040044", "50010517", "10070000", "70150000", "20050550", "43060967",
                          "12030000", "50070010", "60050101", "76050101", "86055592", "25050180", "44050199"])
        return blz + rdig(rng, 10) if rng.random() < 0.5 else blz + "00" + rdig(rng, 8)
    if cc == "AT":
        return rng.choice(["12000", "20111", "14000", "32000", "38000", "20404"]) + rdig(rng, 11)
    if cc == "CH":
        return rng.choice(["00230", "00235", "09000", "04835", "00762", "00700"]) + rdig(rng, 12)
    if cc == "FR":
        bank = rng.choice(["30004", "30003", "20041", "30002", "10278", "11306", "17515", "30066", "10907"])
        branch = rdig(rng, 5)
        acct = rdig(rng, 11)
        return bank + branch + acct + _fr_rib_key(bank, branch, acct)
    if cc == "BE":
        a = rng.choice(["001", "068", "310", "363", "539", "735", "751", "063"]) + rdig(rng, 7)
        chk = int(a) % 97 or 97
        return a + "%02d" % chk
    if cc == "LU":
        return rng.choice(["001", "002", "003", "014", "019"]) + rdig(rng, 13)
    if cc == "ES":
        bank = rng.choice(["2100", "0049", "0182", "0081", "2038", "0128", "1465", "2085", "3058"])
        branch = rdig(rng, 4)
        acct = rdig(rng, 10)
        return bank + branch + _es_dc("00" + bank + branch) + _es_dc(acct) + acct
    if cc == "PT":
        b = rng.choice(["0035", "0033", "0010", "0018", "0007", "0036"]) + rdig(rng, 4) + rdig(rng, 11)
        return b + "%02d" % (98 - int(b + "00") % 97)
    if cc == "NL":
        return rng.choice(["ABNA", "INGB", "RABO", "SNSB", "TRIO", "ASNB", "KNAB", "BUNQ"]) + _nl_account(rng)
    if cc == "IT":
        abi = rng.choice(["03069", "02008", "05034", "01030", "03111", "05696", "02008", "03062"])
        cab = rdig(rng, 5)
        conto = "0" * rng.randint(2, 6)
        conto = conto + rdig(rng, 12 - len(conto))
        return _it_cin(abi + cab + conto) + abi + cab + conto
    if cc == "PL":
        return _pl_sort(rng) + rdig(rng, 16)
    if cc == "GB":
        bank, sort = rng.choice([("NWBK", "60" + rdig(rng, 4)), ("BARC", "20" + rdig(rng, 4)), ("LOYD", "30" + rdig(rng, 4)),
                                 ("HBUK", "40" + rdig(rng, 4)), ("MIDL", "40" + rdig(rng, 4)), ("MONZ", "040004"),
                                 ("NAIA", "07" + rdig(rng, 4)), ("SRLG", "60" + rdig(rng, 4))])
        return bank + sort + rdig(rng, 8)
    if cc == "IE":
        bank, sort = rng.choice([("AIBK", "93" + rdig(rng, 4)), ("BOFI", "90" + rdig(rng, 4)), ("IPBS", "99" + rdig(rng, 4))])
        return bank + sort + rdig(rng, 8)
    if cc == "SE":
        return rng.choice(["500", "800", "600", "300", "957"]) + rdig(rng, 17)
    if cc == "DK":
        return rdig(rng, 14)
    if cc == "FI":
        return rng.choice(["1", "2", "5", "8"]) + rdig(rng, 13)
    if cc == "AE":
        return rng.choice(["033", "026", "035", "030"]) + rdig(rng, 16)
    if cc == "BR":
        return rng.choice(["00000000", "00360305", "60701190", "60746948", "90400888"]) + rdig(rng, 5) + rdig(rng, 10) + "C1"
    raise KeyError(cc)


IBAN_COUNTRIES = {
    "de-DE": ["DE"] * 8 + ["AT", "CH"], "fr-FR": ["FR"] * 8 + ["BE", "LU"], "es-ES": ["ES"] * 9 + ["PT"],
    "nl-NL": ["NL"] * 8 + ["BE", "DE"], "it-IT": ["IT"] * 9 + ["CH"], "pl-PL": ["PL"] * 9 + ["DE"],
    "pt-BR": ["BR", "BR", "PT", "PT", "ES"], "en-GB": ["GB"] * 7 + ["IE", "IE", "FR"], "en-US": ["DE", "GB", "FR", "NL", "IE", "CH"],
    "en-IN": ["AE", "AE", "GB", "DE"], "en-AU": ["GB", "IE", "DE", "NL"],
}


def gen_iban(rng, cc):
    return make_iban(cc, gen_bban(rng, cc))


def fmt_iban(rng, iban, style=None):
    if style is None:
        style = rng.choice(["print", "print", "print", "compact", "compact"])
    if style == "compact":
        return iban
    if style == "lower":
        return iban.lower()
    return group(iban)


# ---------------------------------------------------------------------------
# US social security numbers (never 000/666/9xx area, 00 group, 0000 serial)
# ---------------------------------------------------------------------------

def gen_ssn(rng):
    while True:
        a = rng.randint(1, 899)
        if a == 666:
            continue
        g, s = rng.randint(1, 99), rng.randint(1, 9999)
        v = "%03d%02d%04d" % (a, g, s)
        if v in ("078051120", "219099999", "123456789"):
            continue
        return v


def fmt_ssn(rng, v, style=None):
    if style is None:
        style = rng.choice(["dash"] * 6 + ["space", "plain"])
    if style == "dash":
        return f"{v[:3]}-{v[3:5]}-{v[5:]}"
    if style == "space":
        return f"{v[:3]} {v[3:5]} {v[5:]}"
    return v

# ---------------------------------------------------------------------------
# secrets
# ---------------------------------------------------------------------------
PW_WORDS = {
    "en": ["Summer", "Bluebird", "Welcome", "Sunshine", "Falcon", "Harbor", "Maple", "Thunder", "Copper", "Dragon", "Winter", "Rocket"],
    "de": ["Sommer", "Hasenbraten", "Bergfreund", "Sonnenblume", "Fruehling", "Schalke", "Wanderweg", "Apfelbaum", "Lindenhof", "Kaffeepause"],
    "fr": ["Soleil", "Marseille", "Chaton", "Printemps", "Bretagne", "Papillon", "Lavande", "Croissant", "Etoile", "Montagne"],
    "es": ["Verano", "Barcelona", "Gatito", "Primavera", "Girasol", "Tortilla", "Flamenco", "Mariposa", "Castillo", "Galicia"],
    "nl": ["Zomer", "Tulpen", "Fietsen", "Molen", "Stroopwafel", "Kikker", "Duinen", "Haring", "Lente", "Grachten"],
    "it": ["Estate", "Juventus", "Gattino", "Primavera", "Girasole", "Pizzeria", "Toscana", "Farfalla", "Sole", "Vesuvio"],
    "pl": ["Lato", "Kotek", "Wiosna", "Slonecznik", "Pierogi", "Legia", "Krakow", "Motyl", "Jezioro", "Zamek"],
    "pt": ["Flamengo", "Verao", "Gatinho", "Saudade", "Palmeiras", "Girassol", "Praia", "Brigadeiro", "Cachorro", "Sertao"],
}
PHRASE_WORDS = {
    "en": "harbor velvet candle orbit maple tractor violin pepper glacier lantern cobalt meadow puzzle saddle thimble walnut".split(),
    "de": "Mondschein Kaffeetasse Gartenzaun Wolke Bleistift Zugspitze Regenschirm Eichhörnchen Brezel Leuchtturm Pinsel Wasserfall".split(),
    "fr": "citron nuage bicyclette horloge marelle tournesol phare cerise girafe lanterne violon sabot".split(),
    "es": "naranja tranvía sombrero ballena guitarra molino cometa tejado lámpara pimiento río escalera".split(),
    "nl": "paraplu windmolen kaasschaaf regenboog fiets dijk zeilboot tulp lantaarn eekhoorn boterham klompen".split(),
    "it": "limone nuvola bicicletta orologio gelato faro ciliegia giraffa lanterna violino ponte mandorla".split(),
    "pl": "jabłko chmura rower zegar latarnia wiewiórka parasol kasztan żaglówka ogórek most sowa".split(),
    "pt": "abacaxi nuvem bicicleta relógio farol cereja girafa lanterna violão coqueiro ponte jangada".split(),
}


def gen_password(rng, style="random", lang="en"):
    if style == "random":
        while True:
            n = rng.randint(14, 24)
            s = rs(rng, ALNUM + "!@#%^&*-_=+", n)
            if (any(c.isdigit() for c in s) and any(c.isupper() for c in s) and any(c.islower() for c in s)
                    and any(not c.isalnum() for c in s) and s[0].isalnum()):
                return s
    if style == "urlsafe":
        return rtoken(rng, ALNUM, rng.randint(16, 28))
    if style == "human":
        w = rng.choice(PW_WORDS.get(lang, PW_WORDS["en"]))
        pat = rng.choice(["{w}{y}!", "{w}#{n}", "{w}@{y}", "{w}{n}{s}", "{s}{w}{n}", "{l}{n}{s}"])
        leet = w.replace("o", "0").replace("a", "4").replace("e", "3") if rng.random() < 0.3 else w
        return pat.format(w=w, y=rng.choice(["2023", "2024", "2025", "24", "1987", "1999"]), n=rdig(rng, rng.randint(2, 3)),
                          s=rng.choice("!#$%&*?"), l=leet)
    if style == "phrase":
        words = rng.sample(PHRASE_WORDS.get(lang, PHRASE_WORDS["en"]), rng.randint(3, 4))
        sep = rng.choice(["-", "-", " ", ".", "_"])
        if rng.random() < 0.5:
            words[rng.randrange(len(words))] += rdig(rng, 2)
        return sep.join(words)
    raise KeyError(style)


def rand_bytes(rng, n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def rand_b64(rng, nbytes, urlsafe=False, pad=True):
    raw = rand_bytes(rng, nbytes)
    out = base64.urlsafe_b64encode(raw).decode() if urlsafe else base64.b64encode(raw).decode()
    return out if pad else out.rstrip("=")


# DER/OpenSSH structure prefixes, so that the base64 bodies start the way real keys do
_PEM_DER = {
    # PKCS#1 RSA 2048: SEQUENCE(1188) INTEGER 0, INTEGER modulus(257 bytes, leading 00)
    "RSA PRIVATE KEY": (bytes.fromhex("308204a40201000282010100"), 1192),
    # PKCS#8 wrapping an RSA 2048 key
    "PRIVATE KEY": (bytes.fromhex("308204bd020100300d06092a864886f70d0101010500048204a7308204a30201000282010100"), 1217),
}


def gen_pem(rng, kind=None, sep="\n"):
    if kind is None:
        kind = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "RSA PRIVATE KEY"])
    if kind in _PEM_DER:
        prefix, total = _PEM_DER[kind]
        der = prefix + rand_bytes(rng, total - len(prefix))
        width = 64
    elif kind == "EC PRIVATE KEY":
        der = (bytes.fromhex("30770201010420") + rand_bytes(rng, 32) + bytes.fromhex("a00a06082a8648ce3d030107a144034200")
               + b"\x04" + rand_bytes(rng, 64))
        width = 64
    else:  # OpenSSH ed25519, unencrypted
        pub = rand_bytes(rng, 32)
        blob = (b"openssh-key-v1\x00" + b"\x00\x00\x00\x04none" * 2 + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x01"
                + b"\x00\x00\x00\x33\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + pub)
        check = rand_bytes(rng, 4)
        priv = (check + check + b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + pub + b"\x00\x00\x00\x40" + rand_bytes(rng, 32) + pub
                + b"\x00\x00\x00\x10" + rng.choice([b"deploy@ci-runner", b"jenkins@build-01", b"root@bastion-eu1"]) + b"\x01\x02\x03\x04\x05\x06\x07")
        der = blob + len(priv).to_bytes(4, "big") + priv
        width = 70
    body = base64.b64encode(der).decode()
    lines = [body[i:i + width] for i in range(0, len(body), width)]
    return f"-----BEGIN {kind}-----" + sep + sep.join(lines) + sep + f"-----END {kind}-----"


def b64url(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def gen_jwt(rng, alg=None):
    alg = alg or rng.choice(["HS256", "RS256", "HS256"])
    hdr = {"alg": alg, "typ": "JWT"}
    if alg == "RS256" and rng.random() < 0.5:
        hdr["kid"] = rtoken(rng, ALNUM, 20)
    now = rng.randint(1700000000, 1735000000)
    payload = rng.choice([
        {"sub": str(rng.randint(10000, 999999)), "name": "svc-" + rng.choice(["billing", "export", "sync"]), "iat": now},
        {"sub": "auth0|" + rs(rng, HEXL, 24), "aud": "https://api." + rng.choice(["acme-cloud.io", "orderly.app", "parcelhub.net"]),
         "iat": now, "exp": now + 86400, "scope": "read:orders write:orders"},
        {"iss": "https://login." + rng.choice(["kestrel.io", "tulpdata.nl", "nordlicht.cloud"]), "sub": rs(rng, HEXL, 8) + "-" + rs(rng, HEXL, 4),
         "role": rng.choice(["admin", "service_role", "authenticated"]), "iat": now, "exp": now + 3600},
    ])
    h = b64url(json.dumps(hdr, separators=(",", ":")).encode())
    p = b64url(json.dumps(payload, separators=(",", ":")).encode())
    sig = rand_b64(rng, 32 if alg == "HS256" else 256, urlsafe=True, pad=False)
    return f"{h}.{p}.{sig}"


def gen_secret(rng, kind, lang="en"):
    """Return a credential string in the provider's published format."""
    if kind == "aws_akid":
        return rng.choice(["AKIA", "AKIA", "AKIA", "ASIA"]) + rtoken(rng, UP + "234567", 16)
    if kind == "aws_secret":
        return rtoken(rng, string.ascii_letters + string.digits + "/+", 40)
    if kind == "aws_session":
        return "IQoJb3JpZ2luX2VjE" + rand_b64(rng, 255)
    if kind == "gh_pat":
        return "ghp_" + rtoken(rng, ALNUM, 36)
    if kind == "gh_oauth":
        return rng.choice(["gho_", "ghu_", "ghs_"]) + rtoken(rng, ALNUM, 36)
    if kind == "gh_fine":
        return "github_pat_11" + rtoken(rng, UP + DIG, 20) + "_" + rtoken(rng, ALNUM, 59)
    if kind == "glpat":
        return "glpat-" + rtoken(rng, ALNUM + "-_", 20)
    if kind == "slack_bot":
        return f"xoxb-{rdig(rng, rng.randint(11, 13))}-{rdig(rng, 13)}-{rtoken(rng, ALNUM, 24)}"
    if kind == "slack_user":
        return f"xoxp-{rdig(rng, 12)}-{rdig(rng, 12)}-{rdig(rng, 13)}-{rs(rng, HEXL, 32)}"
    if kind == "slack_webhook":
        return f"https://hooks.slack.com/services/T{rtoken(rng, UP + DIG, 8)}/B{rtoken(rng, UP + DIG, 10)}/{rtoken(rng, ALNUM, 24)}"
    if kind == "stripe_sk":
        return rng.choice(["sk_live_", "rk_live_"]) + (rtoken(rng, ALNUM, 24) if rng.random() < 0.4 else "51" + rtoken(rng, ALNUM, 97))
    if kind == "stripe_whsec":
        return "whsec_" + rtoken(rng, ALNUM, 32)
    if kind == "openai":
        if rng.random() < 0.5:
            return "sk-" + rtoken(rng, ALNUM, 20) + "T3BlbkFJ" + rtoken(rng, ALNUM, 20)
        return "sk-proj-" + rtoken(rng, B64URL, 74) + "T3BlbkFJ" + rtoken(rng, B64URL, 74)
    if kind == "anthropic":
        return "sk-ant-api03-" + rtoken(rng, B64URL, 93) + "AA"
    if kind == "gcp_api":
        return "AIzaSy" + rtoken(rng, B64URL, 33)
    if kind == "gcp_oauth":
        return "GOCSPX-" + rtoken(rng, B64URL, 28)
    if kind == "sendgrid":
        return "SG." + rtoken(rng, B64URL, 22) + "." + rtoken(rng, B64URL, 43)
    if kind == "twilio_token":
        return rs(rng, HEXL, 32)
    if kind == "twilio_sk":
        return "SK" + rs(rng, HEXL, 32)
    if kind == "mailgun":
        return "key-" + rs(rng, HEXL, 32)
    if kind == "npm":
        return "npm_" + rtoken(rng, ALNUM, 36)
    if kind == "pypi":
        return "pypi-AgEIcHlwaS5vcmcCJG" + rtoken(rng, B64URL, 150)
    if kind == "azure_key":
        return rand_b64(rng, 64)
    if kind == "azure_sig":
        raw = rtoken(rng, B64, 43) + "="
        return raw.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    if kind == "vault":
        return "hvs." + rtoken(rng, ALNUM, 24)
    if kind == "datadog":
        return rs(rng, HEXL, 32)
    if kind == "hex40":
        return rs(rng, HEXL, 40)
    if kind == "shopify":
        return rng.choice(["shpat_", "shpss_"]) + rs(rng, HEXL, 32)
    if kind == "telegram":
        return f"{rng.randint(100000000, 7999999999)}:AA{rtoken(rng, B64URL, 33)}"
    if kind == "discord":
        uid = str(rng.randint(10 ** 17, 10 ** 18 - 1))
        return b64url(uid.encode()) + "." + rtoken(rng, B64URL, 6) + "." + rtoken(rng, B64URL, 38)
    if kind == "jwt":
        return gen_jwt(rng)
    if kind == "django":
        return "django-insecure-" + rtoken(rng, LOW + DIG + "!@#$%^&*(-_=+)", 50) if rng.random() < 0.3 else rtoken(rng, LOW + DIG + "!@#$%^&*(-_=+)", 50)
    if kind == "rails":
        return rs(rng, HEXL, 128)
    if kind == "wp_salt":
        return rtoken(rng, ALNUM + "!@#$%^&*()-_[]{}<>~+=,.;:/?|", 64).replace("'", "").replace("\\", "")
    if kind == "basic":
        user = rng.choice(["admin", "api", "svc-export", "jenkins", "deploy", "report"])
        return basic_b64(user, gen_password(rng, rng.choice(["random", "urlsafe", "human"]), lang))
    if kind == "laravel":
        return rand_b64(rng, 32)
    if kind == "mapbox_sk":
        return "sk.eyJ1Ijoi" + rtoken(rng, B64URL, 60) + "." + rtoken(rng, B64URL, 22)
    if kind == "hf":
        return "hf_" + rtoken(rng, ALNUM, 34)
    if kind == "do":
        return "dop_v1_" + rs(rng, HEXL, 64)
    if kind == "password":
        return gen_password(rng, "random", lang)
    if kind == "password_url":
        return gen_password(rng, "urlsafe", lang)
    if kind == "password_human":
        return gen_password(rng, "human", lang)
    if kind == "passphrase":
        return gen_password(rng, "phrase", lang)
    if kind == "pem":
        return gen_pem(rng)
    if kind == "pem_json":
        return gen_pem(rng, "PRIVATE KEY", sep="\\n")
    if kind == "generic_api":
        return rtoken(rng, rng.choice([ALNUM, HEXL, B64URL]), rng.choice([32, 40, 48]))
    raise KeyError(kind)


def _non_luhn(rng, n):
    while True:
        v = rdig(rng, n)
        if not luhn_ok("100" + v):
            return v


def basic_b64(user, pw):
    return base64.b64encode(f"{user}:{pw}".encode()).decode()

# ---------------------------------------------------------------------------
# hard-negative generators
# ---------------------------------------------------------------------------
GS1_PREFIX = {"de-DE": ["400", "401", "402", "405", "426", "440"], "fr-FR": ["300", "325", "340", "376"],
              "es-ES": ["840", "843", "847"], "nl-NL": ["871", "872", "875"], "it-IT": ["800", "803", "805", "80"],
              "pl-PL": ["590"], "pt-BR": ["789", "790"], "en-IN": ["890"], "en-AU": ["930", "931", "934"],
              "en-GB": ["500", "501", "503", "506"], "en-US": ["00", "03", "07", "08"]}


def gen_ean13(rng, loc):
    pre = rng.choice(GS1_PREFIX.get(loc, ["400"]))
    if loc == "en-US":
        pre = "0" + rng.choice(["0", "3", "7", "8"])
    while True:
        base = pre + rdig(rng, 12 - len(pre))
        chk = (10 - sum(int(x) * (1 if i % 2 == 0 else 3) for i, x in enumerate(base)) % 10) % 10
        v = base + str(chk)
        if luhn_ok(v):
            return v


def gen_upc(rng):
    while True:
        base = rng.choice("0367") + rdig(rng, 10)
        chk = (10 - (3 * sum(int(base[i]) for i in range(0, 11, 2)) + sum(int(base[i]) for i in range(1, 11, 2))) % 10) % 10
        v = base + str(chk)
        if luhn_ok(v) and upc_ok(v):
            return v


def gen_imei(rng):
    tac = rng.choice(["35", "35", "86", "01", "35"]) + rdig(rng, 6)
    return luhn_complete(tac + rdig(rng, 6))


def fmt_imei(rng, v):
    return rng.choice([v, v, f"{v[:2]}-{v[2:8]}-{v[8:14]}-{v[14]}", f"{v[:2]} {v[2:8]} {v[8:14]} {v[14]}", f"{v[:8]} {v[8:14]} {v[14]}"])


def gen_isin(rng, loc):
    cc = {"de-DE": "DE", "fr-FR": "FR", "es-ES": "ES", "nl-NL": "NL", "it-IT": "IT", "pl-PL": "PL", "pt-BR": "BR",
          "en-GB": "GB", "en-IN": "INE", "en-AU": "AU"}.get(loc, "US")
    if cc == "INE":
        body = "INE" + rdig(rng, 3) + rng.choice(UP) + rdig(rng, 4)
    elif cc == "DE":
        body = "DE000" + rng.choice(["A", "1", "5"]) + rtoken(rng, UP + DIG, 5, False)
    elif cc == "US":
        body = "US" + rdig(rng, 6) + rdig(rng, 2) + rdig(rng, 1)
    else:
        body = cc + "00" + rdig(rng, 7)
    digits = "".join(str(int(ch, 36)) for ch in body)
    return body + str((10 - luhn_sum(digits + "0")) % 10)


def gen_luhn_num(rng, n, first=None):
    while True:
        pre = (first or str(rng.randint(1, 9)))
        v = luhn_complete(pre + rdig(rng, n - len(pre) - 1))
        if not re.search(r"(\d)\1\1\1\1", v):
            return v


def gen_routing(rng):
    while True:
        v = rng.choice(["01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "21", "22", "26", "31", "32"]) + rdig(rng, 7)
        if aba_ok(v):
            return v


def gen_siren(rng):
    return luhn_complete(str(rng.randint(3, 9)) + rdig(rng, 7))


def gen_regon(rng):
    while True:
        b = rdig(rng, 8)
        w = [8, 9, 2, 3, 4, 5, 6, 7]
        c = sum(int(d) * w[i] for i, d in enumerate(b)) % 11 % 10
        return b + str(c)


def gen_acn(rng):
    b = rdig(rng, 8)
    w = [8, 7, 6, 5, 4, 3, 2, 1]
    c = (10 - sum(int(d) * w[i] for i, d in enumerate(b)) % 10) % 10
    return b + str(c)


def gen_bad_iban(rng, cc):
    good = gen_iban(rng, cc)
    while True:
        chk = "%02d" % rng.randint(0, 99)
        bad = good[:2] + chk + good[4:]
        if chk != good[2:4] and not iban_ok(bad):
            return bad


def gen_creditor_id(rng, cc="DE"):
    while True:
        nat = {"DE": "0" + rdig(rng, 10), "NL": rdig(rng, 8) + "0000", "FR": rtoken(rng, UP + DIG, 6, False),
               "ES": "B" + rdig(rng, 8), "IT": rdig(rng, 11), "AT": rdig(rng, 11), "BE": "0" + rdig(rng, 9)}.get(cc, rdig(rng, 10))
        chk = 98 - int(_iban_digits(nat + cc + "00")) % 97
        v = "%s%02dZZZ%s" % (cc, chk, nat)
        if not iban_ok(v):
            return v


UUID_HEX = HEXL
REAL_VERSIONS = {
    "node": ["18.19.1", "20.11.1", "20.12.2", "20.14.0", "22.2.0", "22.3.0"],
    "python": ["3.10.14", "3.11.9", "3.12.3", "3.12.4", "3.11.8"],
    "git": ["2.39.2", "2.43.0", "2.45.1", "2.44.0"],
    "pg": ["15.7", "16.3", "16.2-alpine", "14.12", "16"],
    "nginx": ["1.24.0", "1.25.5", "1.26.1", "1.22.1"],
    "runner": ["16.11.0", "17.0.0", "16.9.1", "17.1.0"],
    "requests": ["2.31.0", "2.32.3", "2.32.2"],
    "mobile": ["iOS 17.4.1", "iOS 17.5", "Android 14", "One UI 6.1", "iOS 16.7.8", "Android 13"],
    "wp": ["6.4.3", "6.5.2", "6.5.4", "6.2.5"],
    "php": ["8.1.28", "8.2.19", "8.3.7", "7.4.33"],
}


def gen_uuid(rng):
    h = rs(rng, HEXL, 32)
    h = h[:12] + "4" + h[13:16] + rng.choice("89ab") + h[17:]
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


DATE_FMT = {"en-US": "{m:02d}/{d:02d}/{y}", "en-GB": "{d:02d}/{m:02d}/{y}", "de-DE": "{d:02d}.{m:02d}.{y}",
            "fr-FR": "{d:02d}/{m:02d}/{y}", "es-ES": "{d:02d}/{m:02d}/{y}", "nl-NL": "{d:02d}-{m:02d}-{y}",
            "it-IT": "{d:02d}/{m:02d}/{y}", "pl-PL": "{d:02d}.{m:02d}.{y}", "pt-BR": "{d:02d}/{m:02d}/{y}",
            "en-IN": "{d:02d}-{m:02d}-{y}", "en-AU": "{d:02d}/{m:02d}/{y}"}
MONTHS = {
    "en": "January February March April May June July August September October November December".split(),
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember".split(),
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre".split(),
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre".split(),
    "nl": "januari februari maart april mei juni juli augustus september oktober november december".split(),
    "it": "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre".split(),
    "pl": "stycznia lutego marca kwietnia maja czerwca lipca sierpnia września października listopada grudnia".split(),
    "pt": "janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro dezembro".split(),
}
MON3 = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()

VAR_NAMES = {
    "password": ["DB_PASSWORD", "POSTGRES_PASSWORD", "MYSQL_ROOT_PASSWORD", "SMTP_PASSWORD", "REDIS_PASSWORD", "ADMIN_PASSWORD", "LDAP_BIND_PASSWORD"],
    "key": ["STRIPE_SECRET_KEY", "OPENAI_API_KEY", "SENDGRID_API_KEY", "AWS_SECRET_ACCESS_KEY", "MAPS_API_KEY", "DD_API_KEY", "APP_SECRET"],
    "token": ["GITHUB_TOKEN", "NPM_TOKEN", "SLACK_BOT_TOKEN", "GITLAB_TOKEN", "VAULT_TOKEN", "SENTRY_AUTH_TOKEN", "PYPI_TOKEN"],
}

# ---------------------------------------------------------------------------
# document context: slot filling and span bookkeeping
# ---------------------------------------------------------------------------
SLOT_RE = re.compile(r"⟦([a-z0-9_]+)(?::([^#⟧]*))?(?:#([A-Za-z0-9_]+))?⟧")

HN_KIND = {
    "ean": "ean13_barcode", "upc": "upc_barcode", "imei": "imei", "isin": "isin", "tracking": "tracking_number",
    "order_luhn": "order_number", "acct_luhn": "account_number", "loyalty": "account_number",
    "ts": "timestamp", "date": "date", "date_iso": "date", "ver": "version", "ip": "ip_address", "ipv6": "ip_address",
    "pid": "phone_like_id", "ph": "placeholder", "ref": "secret_reference", "testcard": "test_card_number",
    "iban_bad": "iban_bad_checksum", "cred_id": "iban_bad_checksum",
    "nine": "nine_digit_non_ssn", "ein": "nine_digit_non_ssn", "routing": "nine_digit_non_ssn", "zip4": "nine_digit_non_ssn",
    "claim": "nine_digit_non_ssn", "siren": "nine_digit_non_ssn", "regon": "nine_digit_non_ssn", "acn": "nine_digit_non_ssn",
    "vatde": "nine_digit_non_ssn", "num9": "nine_digit_non_ssn", "bad_ssn": "nine_digit_non_ssn",
    "sha": "hash_or_id", "sha_short": "hash_or_id", "sha256": "hash_or_id", "uuid": "hash_or_id", "digest": "hash_or_id",
    "stripe_id": "hash_or_id", "twilio_sid": "hash_or_id", "reqid": "hash_or_id",
    "pubkey": "public_key", "pk_live": "public_key", "example_key": "example_credential",
    "mask_card": "masked_value", "mask_ssn": "masked_value", "mask_iban": "masked_value", "mask_ci": "masked_value",
    "pkg": "email_like", "gitssh": "email_like", "prompt": "email_like", "upi": "email_like",
}
ENTITY_TYPES = {
    "email": "email", "email_work": "email", "email_role": "email", "email_obf": "email", "email_foreign": "email",
    "phone": "phone", "phone_local": "phone", "phone_intl": "phone", "phone_e164": "phone", "phone_compact": "phone",
    "phone_foreign": "phone",
    "card": "payment_card", "card_compact": "payment_card", "card_space": "payment_card",
    "iban": "iban", "iban_print": "iban", "iban_compact": "iban", "iban_foreign": "iban",
    "ssn": "ssn", "ssn_dash": "ssn", "ssn_plain": "ssn", "ssn_space": "ssn", "lit_ssn": "ssn",
    "sec": "secret", "pw": "secret", "pw_url": "secret", "pw_human": "secret", "phrase": "secret",
}

CURRENCY = {"en-US": ("$", "pre", ",", "."), "en-GB": ("£", "pre", ",", "."), "de-DE": (" €", "post", ".", ","),
            "fr-FR": (" €", "post", " ", ","), "es-ES": (" €", "post", ".", ","), "nl-NL": ("€ ", "pre", ".", ","),
            "it-IT": ("€ ", "pre", ".", ","), "pl-PL": (" zł", "post", " ", ","), "pt-BR": ("R$ ", "pre", ".", ","),
            "en-IN": ("₹", "pre", ",", "."), "en-AU": ("$", "pre", ",", ".")}


def fmt_amount(loc, v, sym=True):
    cur, pos, th, dec = CURRENCY[loc]
    whole, frac = divmod(round(v * 100), 100)
    w = str(whole)
    if loc == "en-IN" and len(w) > 3:
        head, tail = w[:-3], w[-3:]
        parts = []
        while len(head) > 2:
            parts.insert(0, head[-2:])
            head = head[:-2]
        if head:
            parts.insert(0, head)
        w = ",".join(parts) + "," + tail
    else:
        w = "{:,}".format(whole).replace(",", th)
    s = f"{w}{dec}{frac:02d}"
    if not sym:
        return s
    return cur + s if pos == "pre" else s + cur


class Ctx:
    def __init__(self, rng, loc):
        self.rng = rng
        self.loc = loc
        self.lang = loc[:2]
        self.memo = {}
        self.people = {}
        self.companies = {}
        self.phones = {}
        self.pieces = []
        # a base date for the document (year, month, day)
        self.y = rng.choice([2023, 2024, 2024, 2025])
        self.mo = rng.randint(1, 12)
        self.d = rng.randint(1, 28)

    # ---- pieces ----
    def render(self, tpl):
        out = []
        pos = 0
        for m in SLOT_RE.finditer(tpl):
            if m.start() > pos:
                out.append((tpl[pos:m.start()], None))
            val, label = self.slot(m.group(1), m.group(2), m.group(3))
            out.append((val, label))
            pos = m.end()
        if pos < len(tpl):
            out.append((tpl[pos:], None))
        return out

    def w(self, tpl):
        """Render a template string and append it to the document."""
        self.pieces.extend(self.render(tpl))

    def digits(self, token, n=4):
        return re.sub(r"\D", "", self.v(token))[-n:]

    def exp(self):
        return "%02d/%02d" % (self.rng.randint(1, 12), self.rng.randint(25, 30))

    def bic(self, cc=None):
        cc = cc or {"de": "DE", "fr": "FR", "es": "ES", "nl": "NL", "it": "IT", "pl": "PL", "pt": "BR"}.get(self.lang, "GB")
        return self.rng.choice({"DE": ["COBADEFFXXX", "DEUTDEDBBER", "INGDDEFFXXX", "GENODEM1GLS", "BYLADEM1001", "HASPDEHHXXX"],
                                "FR": ["BNPAFRPPXXX", "SOGEFRPP", "PSSTFRPPPAR", "CRLYFRPP", "AGRIFRPP882"],
                                "ES": ["CAIXESBBXXX", "BSCHESMMXXX", "BBVAESMMXXX", "BSABESBBXXX"],
                                "NL": ["ABNANL2A", "INGBNL2A", "RABONL2U", "TRIONL2U", "BUNQNL2A"],
                                "IT": ["BCITITMM", "UNCRITMMXXX", "BAPPIT21", "PASCITMM"],
                                "PL": ["BPKOPLPW", "BREXPLPWMBK", "INGBPLPW", "WBKPPLPP"],
                                "BR": ["BRASBRRJ", "ITAUBRSP", "BBDEBRSP"],
                                "GB": ["NWBKGB2L", "BARCGB22", "LOYDGB2L", "HBUKGB4B", "MONZGB2L"]}.get(cc, ["NWBKGB2L"]))

    def t(self, s):
        self.pieces.append((s, None))

    def e(self, cat, v):
        self.pieces.append((v, ("E", cat)))

    def h(self, kind, v):
        self.pieces.append((v, ("H", kind)))

    def v(self, token):
        """Value of a slot token like 'email#p1' (no brackets) without appending."""
        m = SLOT_RE.fullmatch("⟦" + token + "⟧")
        return self.slot(m.group(1), m.group(2), m.group(3))[0]

    def pick(self, *opts):
        return self.rng.choice(opts)

    def L(self, d):
        return d.get(self.loc, d.get(self.lang, d.get("en")))

    # ---- entities of the document ----
    def person(self, tag):
        if tag not in self.people:
            firsts, lasts = NAMES[self.loc]
            used = {(p["first"], p["last"]) for p in self.people.values()}
            while True:
                f, l = self.rng.choice(firsts), self.rng.choice(lasts)
                if (f, l) not in used:
                    break
            fem = f in FEMALE
            if self.loc == "pl-PL" and fem:
                for a, b in (("ski", "ska"), ("cki", "cka"), ("dzki", "dzka")):
                    if l.endswith(a):
                        l = l[: -len(a)] + b
            self.people[tag] = {"first": f, "last": l, "female": fem}
        return self.people[tag]

    def use_org(self, sector, tag="co"):
        opts = ORGS[sector].get(self.loc) or ORGS[sector].get("en-US")
        self.companies[tag] = self.rng.choice(opts)

    def company(self, tag="co"):
        if tag not in self.companies:
            used = [c for c in self.companies.values()]
            opts = [c for c in COMPANIES[self.loc] if c not in used]
            self.companies[tag] = self.rng.choice(opts)
        return self.companies[tag]

    def phone_obj(self, tag, kind=None, loc=None):
        key = tag or ("_anon", len(self.phones))
        if key not in self.phones:
            self.phones[key] = gen_phone(self.rng, loc or self.loc, kind)
        return self.phones[key]

    def date_parts(self, offset=0):
        import datetime
        base = datetime.date(self.y, self.mo, self.d) + datetime.timedelta(days=offset)
        return base

    # ---- slot dispatch ----
    def slot(self, typ, arg, tag):
        key = (typ, arg, tag) if tag else None
        if typ == "email_role" and not tag:
            key = (typ, arg, "co")
        if key is not None and key in self.memo:
            return self.memo[key]
        val = self.gen(typ, arg, tag)
        if typ in ENTITY_TYPES:
            label = ("E", ENTITY_TYPES[typ])
        elif typ in HN_KIND:
            label = ("H", HN_KIND[typ])
        else:
            label = None
        res = (val, label)
        if key is not None:
            self.memo[key] = res
        return res

    def gen(self, typ, arg, tag):
        rng, loc, lang = self.rng, self.loc, self.lang
        # ---------------- plain fillers ----------------
        if typ in ("first", "last", "name", "name_rev", "initials", "fname"):
            p = self.person(tag or "p1")
            if typ == "first":
                return p["first"]
            if typ == "last":
                return p["last"]
            if typ == "name_rev":
                return f"{p['last']}, {p['first']}"
            if typ == "initials":
                return p["first"][0] + p["last"][0]
            if typ == "fname":
                return p["first"][0] + ". " + p["last"]
            return f"{p['first']} {p['last']}"
        if typ == "agent":
            return rng.choice(NAMES[loc][0])
        if typ == "company":
            return self.company(tag or "co")[0]
        if typ == "domain":
            return self.company(tag or "co")[1]
        if typ in ("street", "city", "zip", "addr", "addr2"):
            return self.address(typ, tag)
        if typ == "amount":
            lo, hi = (arg or "20-900").split("-")
            return fmt_amount(loc, rng.uniform(float(lo), float(hi)))
        if typ == "num":
            n = int(arg or 6)
            return str(rng.randint(1, 9)) + rdig(rng, n - 1)
        if typ == "inv":
            return (arg or "INV") + "-" + str(self.y) + "-" + rdig(rng, 4)
        if typ == "time":
            return "%02d:%02d" % (rng.randint(7, 19), rng.randint(0, 59))
        if typ == "date_long":
            dt = self.date_parts(int(arg or 0))
            mn = MONTHS[lang][dt.month - 1]
            if loc == "en-US":
                return f"{mn} {dt.day}, {dt.year}"
            return {"de": f"{dt.day}. {mn} {dt.year}", "es": f"{dt.day} de {mn} de {dt.year}", "pt": f"{dt.day} de {mn} de {dt.year}",
                    "pl": f"{dt.day} {mn} {dt.year} r."}.get(lang, f"{dt.day} {mn} {dt.year}")
        if typ == "host":
            return rng.choice(["web-01", "api-prod-2", "db-primary", "worker-3", "build-agent-07", "ip-10-0-3-17", "app-eu-1"])
        if typ == "user":
            p = self.person(tag or "p1")
            return translit(p["first"])[:1] + translit(p["last"])[:7]
        if typ == "user_first":
            return translit(self.person(tag or "p1")["first"])
        if typ == "choice":
            return rng.choice(arg.split("|"))
        # ---------------- entities ----------------
        if typ == "email":
            p = self.person(tag or "p1")
            return self.email_local(p) + "@" + rng.choice(FREEMAIL[loc])
        if typ == "email_foreign":
            other = rng.choice([l for l in LOCALES if l != loc])
            f, l = rng.choice(NAMES[other][0]), rng.choice(NAMES[other][1])
            return self.email_local({"first": f, "last": l}) + "@" + rng.choice(FREEMAIL[other])
        if typ == "email_work":
            p = self.person(tag or "p1")
            f, l = translit(p["first"]), translit(p["last"])
            local = rng.choice([f"{f}.{l}", f"{f}.{l}", f"{f[0]}.{l}", f"{f}", f"{f[0]}{l}", f"{l}"])
            return local + "@" + self.company(arg or "co")[1]
        if typ == "email_role":
            role = arg or "info"
            r = rng.choice(ROLE[lang if lang in ROLE else "en"][role])
            comp = self.company(tag if tag and tag.startswith("co") else "co")
            return r + "@" + comp[1]
        if typ == "email_obf":
            p = self.person(tag or "p1")
            dom = self.company("co")[1]
            name, tld = dom.rsplit(".", 1)
            local = translit(p["first"]) + "." + translit(p["last"])
            return rng.choice([f"{local} [at] {name} [dot] {tld}", f"{local}(at){dom}", f"{local} (at) {name} (dot) {tld}", f"{local} at {dom}"])
        if typ.startswith("phone"):
            if typ == "phone_foreign":
                other = rng.choice([l for l in LOCALES if l != loc and l != "en-US"] + ["en-US"])
                return self.phone_obj(("foreign", tag) if tag else None, arg, other).fmt(rng, "intl")
            ph = self.phone_obj(tag, arg)
            style = {"phone_local": "local", "phone_intl": "intl", "phone_e164": "e164", "phone_compact": "compact"}.get(typ)
            if style is None:
                style = "intl" if rng.random() < 0.25 else "local"
            return ph.fmt(rng, style)
        if typ.startswith("card"):
            net, num = gen_card(rng, loc, arg or None)
            style = {"card_compact": "compact", "card_space": "space"}.get(typ)
            return fmt_card(rng, net, num, style)
        if typ in ("iban", "iban_print", "iban_compact", "iban_foreign"):
            cc = arg or rng.choice(IBAN_COUNTRIES[loc])
            if cc == "home":
                cc = IBAN_COUNTRIES[loc][0]
            if typ == "iban_foreign":
                cc = arg or rng.choice([c for c in ["DE", "FR", "NL", "ES", "IT", "GB", "BE", "AT", "IE", "PL", "PT", "CH"]
                                        if c not in IBAN_COUNTRIES[loc][:1]])
            ib = gen_iban(rng, cc)
            style = {"iban_print": "print", "iban_compact": "compact"}.get(typ)
            return fmt_iban(rng, ib, style)
        if typ.startswith("ssn"):
            style = {"ssn_dash": "dash", "ssn_plain": "plain", "ssn_space": "space"}.get(typ)
            return fmt_ssn(rng, gen_ssn(rng), style)
        if typ == "sec":
            return gen_secret(rng, arg, lang)
        if typ == "pw":
            return gen_password(rng, "random", lang)
        if typ == "pw_url":
            return gen_password(rng, "urlsafe", lang)
        if typ == "pw_human":
            return gen_password(rng, "human", lang)
        if typ == "phrase":
            return gen_password(rng, "phrase", lang)
        # ---------------- hard negatives ----------------
        return self.gen_hn(typ, arg, tag)

    def email_local(self, p):
        rng = self.rng
        f, l = translit(p["first"]), translit(p["last"])
        return rng.choice([f"{f}.{l}", f"{f}.{l}", f"{f[0]}.{l}", f"{f}{l}", f"{f}_{l}", f"{f[0]}{l}", f"{l}.{f}",
                           f"{f}.{l}{rng.randint(1, 99)}", f"{f}{rng.randint(70, 99)}", f"{f}{l[0]}", f"{l}{f[0]}{rng.randint(1, 9)}",
                           f"{f}.{l}", f"{f}-{l}"])

    def address(self, typ, tag):
        rng, loc = self.rng, self.loc
        key = ("addr", tag or "p1")
        if key not in self.memo:
            streets, cities = ADDR[loc]
            st = rng.choice(streets)
            no = str(rng.randint(1, 180))
            c = rng.choice(cities)
            self.memo[key] = (st, no, c)
        st, no, c = self.memo[key]
        if loc == "en-US":
            street, city, zipc = f"{no} {st}", f"{c[0]}, {c[1]}", c[2]
            one = f"{street}, {c[0]}, {c[1]} {c[2]}"
            two = f"{street}\n{c[0]}, {c[1]} {c[2]}"
        elif loc in ("en-GB",):
            street, city, zipc = f"{no} {st}", c[0], c[1]
            one, two = f"{street}, {c[0]} {c[1]}", f"{street}\n{c[0]}\n{c[1]}"
        elif loc == "en-AU":
            street, city, zipc = f"{no} {st}", f"{c[0]} {c[1]}", c[2]
            one, two = f"{street}, {c[0]} {c[1]} {c[2]}", f"{street}\n{c[0]} {c[1]} {c[2]}"
        elif loc == "en-IN":
            street, city, zipc = f"No. {no}, {st}", c[0], c[1]
            one, two = f"{street}, {c[0]} - {c[1]}", f"{street}\n{c[0]} - {c[1]}"
        elif loc == "fr-FR":
            street, city, zipc = f"{no} {st}", c[0], c[1]
            one, two = f"{street}, {c[1]} {c[0]}", f"{street}\n{c[1]} {c[0]}"
        elif loc == "it-IT":
            street, city, zipc = f"{st} {no}", c[0], c[1]
            one, two = f"{street}, {c[1]} {c[0]} ({c[2]})", f"{street}\n{c[1]} {c[0]} ({c[2]})"
        elif loc == "pt-BR":
            street, city, zipc = f"{st}, {no}", f"{c[0]} – {c[1]}", c[2]
            one, two = f"{street} – {c[0]}/{c[1]}, CEP {c[2]}", f"{street}\n{c[0]} – {c[1]}\nCEP {c[2]}"
        elif loc == "es-ES":
            street, city, zipc = f"{st}, {no}", c[0], c[1]
            one, two = f"{street}, {c[1]} {c[0]}", f"{street}\n{c[1]} {c[0]}"
        else:  # de, nl, pl
            street, city, zipc = f"{st} {no}", c[0], c[1]
            one, two = f"{street}, {c[1]} {c[0]}", f"{street}\n{c[1]} {c[0]}"
        return {"street": street, "city": city, "zip": zipc, "addr": one, "addr2": two}[typ]

    def ts_parts(self):
        """Timestamps inside one document move forward like a real log."""
        rng = self.rng
        import datetime
        if not hasattr(self, "_clock"):
            self._clock = datetime.datetime(self.y, self.mo, self.d, rng.randint(6, 20), rng.randint(0, 59), rng.randint(0, 59))
        self._clock += datetime.timedelta(seconds=rng.choice([0, 1, 1, 2, 3, 5, 8, 13, 30, 45, 60, 90, 240]))
        return self._clock

    def gen_hn(self, typ, arg, tag):
        rng, loc, lang = self.rng, self.loc, self.lang
        import calendar
        if typ == "ean":
            v = gen_ean13(rng, loc)
            return v if rng.random() < 0.8 else f"{v[0]} {v[1:7]} {v[7:]}"
        if typ == "upc":
            v = gen_upc(rng)
            return v if rng.random() < 0.7 else f"{v[0]} {v[1:6]} {v[6:11]} {v[11]}"
        if typ == "imei":
            return fmt_imei(rng, gen_imei(rng))
        if typ == "isin":
            return gen_isin(rng, loc)
        if typ == "tracking":
            st = arg or rng.choice(["fedex", "dhl", "usps", "gen16", "gen20"])
            if st == "fedex":
                return gen_luhn_num(rng, 12, rng.choice(["7", "3", "5"]))
            if st == "dhl":
                return gen_luhn_num(rng, 20, "00340434")
            if st == "usps":
                v = gen_luhn_num(rng, 22, "9400" + rng.choice(["1", "1", "5"]))
                return v if rng.random() < 0.5 else group(v)
            if st == "gen16":
                return gen_luhn_num(rng, 16, rng.choice(["4", "5", "3"]))
            v = gen_luhn_num(rng, 20)
            return v
        if typ == "order_luhn":
            n = int(arg) if arg else rng.choice([16, 16, 15, 14, 19])
            v = gen_luhn_num(rng, n, rng.choice(["4", "5", "3", "6", "1", "2"]))
            return v if rng.random() < 0.75 else group(v, 4, rng.choice([" ", "-"]))
        if typ == "acct_luhn":
            n = int(arg) if arg else rng.choice([10, 11, 12, 13])
            return gen_luhn_num(rng, n)
        if typ == "loyalty":
            v = gen_luhn_num(rng, 16, rng.choice(["6", "3", "9", "7"]))
            return group(v) if rng.random() < 0.6 else v
        if typ == "ts":
            dt = self.ts_parts()
            st = arg or rng.choice(["iso", "isoz", "epoch", "log", "apache", "syslog", "epoch_ms"])
            ep = calendar.timegm(dt.timetuple())
            ms = rng.randint(0, 999)
            if st == "iso":
                return dt.strftime("%Y-%m-%dT%H:%M:%S") + {"en-US": "-05:00", "en-GB": "+01:00", "pt-BR": "-03:00", "en-IN": "+05:30",
                                                            "en-AU": "+10:00"}.get(loc, rng.choice(["+01:00", "+02:00"]))
            if st == "isoz":
                return dt.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % ms
            if st == "gha":
                return dt.strftime("%Y-%m-%dT%H:%M:%S") + ".%07dZ" % rng.randint(0, 9999999)
            if st == "epoch":
                return str(ep)
            if st == "epoch_ms":
                return str(ep * 1000 + ms)
            if st == "log":
                return dt.strftime("%Y-%m-%d %H:%M:%S") + ",%03d" % ms
            if st == "logdot":
                return dt.strftime("%Y-%m-%d %H:%M:%S") + ".%03d" % ms
            if st == "apache":
                return dt.strftime("%d/") + MON3[dt.month - 1] + dt.strftime("/%Y:%H:%M:%S ") + {"en-US": "-0500", "en-IN": "+0530", "en-AU": "+1000", "pt-BR": "-0300"}.get(loc, "+0100")
            if st == "syslog":
                return MON3[dt.month - 1] + " %2d " % dt.day + dt.strftime("%H:%M:%S")
            if st == "hms":
                return dt.strftime("%H:%M:%S")
            raise KeyError(st)
        if typ == "date":
            dt = self.date_parts(int(arg or 0))
            return DATE_FMT[loc].format(d=dt.day, m=dt.month, y=dt.year)
        if typ == "date_iso":
            dt = self.date_parts(int(arg or 0))
            return dt.isoformat()
        if typ == "ver":
            st = arg or rng.choice(["semver", "v", "rc", "four", "win"])
            if st in REAL_VERSIONS:
                return rng.choice(REAL_VERSIONS[st])
            a = rng.choice([0, 1, 1, 2, 2, 3, 4, 5, 6, 8, 11])
            b, c = rng.randint(0, 24), rng.randint(0, 19)
            if st == "semver":
                return f"{a}.{b}.{c}"
            if st == "v":
                return f"v{a}.{b}.{c}"
            if st == "rc":
                return f"{a}.{b}.{c}-" + rng.choice(["rc.1", "rc.2", "beta.3", "alpha.7", "SNAPSHOT"])
            if st == "four":
                return f"{a + 1}.{b}.{c}.{rng.randint(100, 9999)}"
            if st == "win":
                return f"10.0.{rng.choice(['19045', '22621', '22631', '26100'])}.{rng.randint(1000, 5000)}"
            raise KeyError(st)
        if typ == "ip":
            st = arg or rng.choice(["priv", "priv", "doc", "pub"])
            if st == "priv":
                return rng.choice([f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                                   f"192.168.{rng.choice([0, 1, 178, 2, 10])}.{rng.randint(2, 254)}",
                                   f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"])
            if st == "doc":
                return rng.choice(["192.0.2.", "198.51.100.", "203.0.113."]) + str(rng.randint(1, 254))
            return f"{rng.choice([31, 46, 62, 77, 81, 85, 91, 94, 134, 145, 178, 185, 212])}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        if typ == "ipv6":
            return rng.choice([f"2001:db8:{rs(rng, HEXL, 4)}::{rs(rng, HEXL, 3)}", f"fe80::{rs(rng, HEXL, 3)}:{rs(rng, HEXL, 4)}:fe{rs(rng, HEXL, 2)}:{rs(rng, HEXL, 4)}",
                               f"2a02:{rs(rng, HEXL, 4)}:{rs(rng, HEXL, 4)}:{rs(rng, HEXL, 2)}00::{rs(rng, HEXL, 2)}"])
        if typ == "pid":
            return self.phone_like_id()
        if typ == "ph":
            return self.placeholder(arg or "key")
        if typ == "ref":
            return self.secret_ref(arg or "env.password")
        if typ == "testcard":
            c = rng.choice(TEST_CARDS) if not arg else arg
            if rng.random() < 0.5:
                return c
            if len(c) == 15:
                return f"{c[:4]} {c[4:10]} {c[10:]}"
            if len(c) == 14:
                return f"{c[:4]} {c[4:10]} {c[10:]}"
            return group(c)
        if typ == "iban_bad":
            cc = arg or rng.choice(IBAN_COUNTRIES[loc])
            v = gen_bad_iban(rng, cc)
            return v if rng.random() < 0.5 else group(v)
        if typ == "cred_id":
            cc = arg or "DE"
            return gen_creditor_id(rng, cc)
        if typ == "nine":
            if loc == "en-US":
                return self.gen_hn(rng.choice(["ein", "zip4", "claim", "routing", "num9"]), None, None)
            if loc == "fr-FR":
                return self.gen_hn("siren", None, None)
            if loc == "pl-PL":
                return self.gen_hn("regon", None, None)
            if loc == "en-AU":
                return self.gen_hn("acn", None, None)
            if loc == "de-DE":
                return self.gen_hn("vatde", None, None)
            return self.gen_hn("num9", None, None)
        if typ == "ein":
            return rng.choice(["12", "20", "27", "45", "46", "47", "81", "82", "83", "84", "86", "88", "91", "93", "94", "95"]) + "-" + rdig(rng, 7)
        if typ == "routing":
            return gen_routing(rng)
        if typ == "zip4":
            return rng.choice(["78745", "80211", "43215", "97214", "27609", "33602", "94105", "10016"]) + "-" + rdig(rng, 4)
        if typ == "claim":
            return f"{rdig(rng, 3)}-{rdig(rng, 2)}-{rdig(rng, 4)}"
        if typ == "siren":
            v = gen_siren(rng)
            return v if rng.random() < 0.4 else f"{v[:3]} {v[3:6]} {v[6:]}"
        if typ == "regon":
            return gen_regon(rng)
        if typ == "acn":
            v = gen_acn(rng)
            return f"{v[:3]} {v[3:6]} {v[6:]}"
        if typ == "vatde":
            return "DE" + str(rng.randint(1, 3)) + rdig(rng, 8)
        if typ == "num9":
            return str(rng.randint(1, 9)) + rdig(rng, 8)
        if typ == "sha":
            return rs(rng, HEXL, 40)
        if typ == "sha_short":
            return rs(rng, HEXL, rng.choice([7, 7, 8, 10]))
        if typ == "sha256":
            return rs(rng, HEXL, 64)
        if typ == "digest":
            return "sha256:" + rs(rng, HEXL, 64)
        if typ == "uuid":
            return gen_uuid(rng)
        if typ == "stripe_id":
            pre = arg or rng.choice(["cus", "pi", "ch", "in", "sub", "evt", "req", "acct", "price"])
            n = {"cus": 14, "pi": 24, "ch": 24, "in": 24, "sub": 24, "evt": 24, "req": 14, "acct": 16, "price": 24}[pre]
            return pre + "_" + ("1" if pre in ("pi", "ch", "evt", "in", "sub", "price") else "") + rtoken(rng, ALNUM, n)
        if typ == "twilio_sid":
            return (arg or rng.choice(["AC", "MG", "SM", "CA"])) + rs(rng, HEXL, 32)
        if typ == "reqid":
            return rng.choice([gen_uuid(rng), rs(rng, HEXL, 32), "req_" + rtoken(rng, ALNUM, 20), "Root=1-" + rs(rng, HEXL, 8) + "-" + rs(rng, HEXL, 24)])
        if typ == "pubkey":
            user = rng.choice(["deploy@ci-runner-03", "jenkins@build01", "ops@bastion", "git@deploy-key", "backup@nas"])
            if rng.random() < 0.6:
                return "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + rtoken(rng, B64, 43) + " " + user
            return "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQ" + rtoken(rng, B64, 340) + "= " + user
        if typ == "pk_live":
            return "pk_live_" + ("51" + rtoken(rng, ALNUM, 97) if rng.random() < 0.5 else rtoken(rng, ALNUM, 24))
        if typ == "example_key":
            return {"aws_id": "AKIAIOSFODNN7EXAMPLE", "aws_secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                    "slack": "xoxb-not-a-real-token-this-will-not-work", "stripe": "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
                    "jwt": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"}[arg or "aws_id"]
        if typ == "mask_card":
            net, num = gen_card(rng, loc)
            last4 = num[-4:]
            return rng.choice([f"**** **** **** {last4}", f"•••• {last4}", f"XXXX-XXXX-XXXX-{last4}", f"{num[:6]}{'*' * (len(num) - 10)}{last4}",
                               f"************{last4}", f"xxxx xxxx xxxx {last4}"])
        if typ == "mask_ssn":
            return rng.choice(["XXX-XX-", "***-**-", "xxx-xx-"]) + rdig(rng, 4)
        if typ == "mask_iban":
            ib = gen_iban(rng, rng.choice(IBAN_COUNTRIES[loc]))
            g = group(ib).split(" ")
            return " ".join([g[0]] + ["****"] * (len(g) - 3) + ["**" + g[-2][2:], g[-1]])
        if typ == "mask_ci":
            return "***"
        if typ == "pkg":
            return rng.choice(["lodash@4.17.21", "@types/node@20.11.5", "react@18.3.1", "typescript@5.4.5", "eslint@8.57.0",
                               "@babel/core@7.24.7", "pnpm@9.1.4", "express@4.19.2", "axios@1.7.2", "vite@5.2.13", "@angular/cli@17.3.8"])
        if typ == "gitssh":
            return rng.choice(["git@github.com:", "git@gitlab.com:", "git@bitbucket.org:"]) + rng.choice(
                ["acme/payments-api.git", "platform/infra.git", "shop/webshop.git", "data/etl-jobs.git", "ops/ansible.git"])
        if typ == "lit_ssn":
            return arg
        if typ == "bad_ssn":
            a = rng.choice(["000", "666", "9" + rdig(rng, 2)])
            g = rdig(rng, 2) if a != "000" else "%02d" % rng.randint(1, 99)
            s = "%04d" % rng.randint(1, 9999)
            if rng.random() < 0.2:
                a, g = "%03d" % rng.randint(1, 665), "00"
            return f"{a}-{g}-{s}"
        if typ == "upi":
            return re.sub(r"[^a-z]", "", translit(self.company("co")[0]))[:12] + "@" + rng.choice(["okhdfcbank", "okicici", "oksbi", "ybl", "paytm"])
        if typ == "prompt":
            return rng.choice(["deploy", "root", "ubuntu", "ec2-user", "admin"]) + "@" + rng.choice(["web-02", "db-primary", "ip-10-0-3-17", "bastion", "build-01"])
        raise KeyError(typ)

    def phone_like_id(self):
        rng, loc = self.rng, self.loc
        d = lambda n: rdig(rng, n)
        shapes = {
            "en-US": [lambda: f"{d(3)}-{d(3)}-{d(4)}", lambda: f"{rng.randint(111, 114)}-{d(7)}-{d(7)}"],
            "en-GB": [lambda: f"0{d(4)} {d(6)}", lambda: f"0{d(3)} {d(4)} {d(4)}"],
            "de-DE": [lambda: f"0{d(3)}-{d(7)}", lambda: f"{d(3)}/{d(7)}"],
            "fr-FR": [lambda: f"0{rng.randint(1, 9)} {d(2)} {d(2)} {d(2)} {d(2)}"],
            "es-ES": [lambda: f"{d(3)} {d(3)} {d(3)}"],
            "nl-NL": [lambda: f"{d(2)}-{d(8)}", lambda: f"0{d(2)}-{d(7)}"],
            "it-IT": [lambda: f"{d(3)} {d(7)}"],
            "pl-PL": [lambda: f"{d(3)}-{d(3)}-{d(3)}"],
            "pt-BR": [lambda: f"({d(2)}) {d(5)}-{d(4)}", lambda: f"{d(5)}-{d(4)}"],
            "en-IN": [lambda: f"{d(5)} {d(5)}"],
            "en-AU": [lambda: f"{d(4)} {d(3)} {d(3)}"],
        }
        return rng.choice(shapes[loc])()

    def placeholder(self, kind):
        rng, lang = self.rng, self.lang
        if kind == "key":
            return rng.choice(["<YOUR_API_KEY>", "YOUR_API_KEY_HERE", "sk_live_xxxxxxxxxxxxxxxxxxxxxxxx", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                               "<api-key>", "REPLACE_ME", "your-api-key", "AKIAXXXXXXXXXXXXXXXX", "<insert key here>", "TODO-add-key"])
        if kind == "token":
            return rng.choice(["<token>", "YOUR_TOKEN", "ghp_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "xoxb-XXXX-XXXX-XXXX", "[REDACTED]",
                               "<redacted>", "<PERSONAL_ACCESS_TOKEN>", "glpat-xxxxxxxxxxxxxxxxxxxx"])
        if kind == "password":
            loc_pw = {"de": ["<Passwort>", "IhrPasswort", "********"], "fr": ["votre_mot_de_passe", "<mot-de-passe>"],
                      "es": ["tu_contraseña", "<contraseña>"], "nl": ["jouw_wachtwoord", "<wachtwoord>"],
                      "it": ["la_tua_password", "<password>"], "pl": ["twoje_haslo", "<hasło>"], "pt": ["sua_senha", "<senha>"]}
            return rng.choice(["changeme", "<password>", "********", "your_password", "CHANGE_ME", "xxxxxxxx", "<db-password>", "[REDACTED]"]
                              + loc_pw.get(lang, []) * 2)
        if kind == "stars":
            return rng.choice(["********", "••••••••", "***", "[hidden]"])
        raise KeyError(kind)

    def secret_ref(self, arg):
        rng = self.rng
        style, _, kind = arg.partition(".")
        kind = kind or "password"
        name = rng.choice(VAR_NAMES[kind])
        low = name.lower()
        app = rng.choice(["billing", "webshop", "payments", "crm", "api", "intranet"])
        if style == "env":
            return "${" + name + "}"
        if style == "sh":
            return "$" + name
        if style == "gha":
            return "${{ secrets." + name + " }}"
        if style == "jinja":
            return "{{ vault_" + low + " }}"
        if style == "vault":
            return f"vault:secret/data/{app}/prod#{low}"
        if style == "awssm":
            return f"arn:aws:secretsmanager:{rng.choice(['eu-central-1', 'us-east-1', 'eu-west-1', 'ap-south-1'])}:{rdig(self.rng, 12)}:secret:{app}/prod/{low}-{rtoken(rng, ALNUM, 6, False)}"
        if style == "gcpsm":
            return f"projects/{app}-prod-{rdig(rng, 4)}/secrets/{low.replace('_', '-')}/versions/latest"
        if style == "op":
            return f"op://{rng.choice(['Engineering', 'Infra', 'Private'])}/{app}-{low.split('_')[0]}/credential"
        if style == "kv":
            return f"@Microsoft.KeyVault(SecretUri=https://kv-{app}-prod.vault.azure.net/secrets/{name.title().replace('_', '')}/)"
        if style == "symfony":
            return f"%env({name})%"
        if style == "file":
            return f"/run/secrets/{low}"
        if style == "ssm":
            return "{{resolve:ssm-secure:/" + app + "/prod/" + low + "}}"
        if style == "name":
            return name
        raise KeyError(style)

# ===========================================================================
# TEMPLATES
# Each template is a function f(c) that writes into c and returns a filename.
# ===========================================================================
TEMPLATES = {}


def template(genre, locales=None, clean=False, weight=1.0):
    def deco(fn):
        TEMPLATES.setdefault(genre, []).append({"fn": fn, "locales": locales, "clean": clean, "weight": weight})
        return fn
    return deco


EN = ["en-US", "en-GB", "en-IN", "en-AU"]
EN_NOT_US = ["en-GB", "en-IN", "en-AU"]

# ---------------------------------------------------------------------------
# genre 1: support e-mails and chat transcripts
# ---------------------------------------------------------------------------
G1 = "support_email_chat"


@template(G1, EN)
def g1_en_double_charge(c):
    c.use_org("shop")
    c.w("From: ⟦name#p1⟧ <⟦email#p1⟧>\nTo: ⟦company⟧ Support <⟦email_role:support#co⟧>\n"
        "Subject: Re: [Case #⟦pid#case⟧] Charged twice for my order\nDate: ⟦date_long⟧ ⟦time⟧\n\n")
    c.w(c.pick("Hi ⟦agent#a1⟧,\n\n", "Hello,\n\n", "Hi there ⟦agent#a1⟧,\n\n"))
    card = c.v("card#k1")
    c.w("Thanks for getting back to me. I checked my statement again and the charge definitely went through twice on ⟦date⟧ "
        f"(⟦amount:30-400⟧ each). The card I used was ⟦card#k1⟧, exp {c.exp()}. "
        + c.pick("I know you said not to send it but your form keeps timing out.", "Sorry if I shouldn't send the whole number, I just want this sorted.", "")
        + "\n\nOrder number is ⟦order_luhn#o1⟧, placed on ⟦date:-3⟧. You can reach me on ⟦phone#p1⟧ "
        + c.pick("any time after 5pm", "during the day", "most mornings") + ", or just reply to this address.\n\n"
        "Thanks,\n⟦first#p1⟧\n\n")
    c.w("On ⟦date_long:-1⟧, ⟦company⟧ Support <⟦email_role:support#co⟧> wrote:\n"
        "> Hello ⟦first#p1⟧,\n>\n> Thank you for contacting us about case ⟦pid#case⟧. To look into this we need the order number and\n"
        "> the last four digits of the card used. Please do not send full card numbers by e-mail.\n>\n"
        "> Kind regards,\n> ⟦agent#a1⟧\n> ⟦company⟧ Customer Care | ⟦phone:land#co⟧\n")
    return f"case_{c.v('pid#case').replace(' ', '').replace('-', '')}.eml"


@template(G1, EN)
def g1_en_chat(c):
    c.use_org("shop")
    c.w("Live chat transcript – ⟦company⟧\nStarted: ⟦ts:isoz⟧\nVisitor: ⟦name#p1⟧ (⟦email#p1⟧)\nAgent: ⟦agent#a1⟧\n"
        "Page: https://www.⟦domain⟧/checkout/payment\n----------------------------------------\n")
    t = c.rng.randint(8, 20)
    mm = c.rng.randint(0, 40)

    def line(who, txt):
        nonlocal mm
        mm += c.rng.randint(0, 2)
        c.w(f"[{t:02d}:{mm:02d}] {who}: " + txt + "\n")
    line("⟦agent#a1⟧", "Hi, thanks for contacting ⟦company⟧! How can I help today?")
    line("⟦first#p1⟧", c.pick("hi my payment keeps failing at checkout", "hello, checkout says card declined but my bank says its fine",
                              "Hey. Trying to pay for my order and it just spins"))
    line("⟦agent#a1⟧", "Sorry to hear that. Could you confirm the phone number on the account so I can find it?")
    line("⟦first#p1⟧", "⟦phone#p1⟧")
    line("⟦agent#a1⟧", "Thanks, found it. I can see two declined attempts with reference ⟦stripe_id:pi⟧.")
    line("⟦first#p1⟧", c.pick("can you just charge it from here? card is ⟦card#k1⟧ exp " + c.exp(),
                              "ok here is the card: ⟦card#k1⟧ " + c.exp() + " cvc " + rdig(c.rng, 3),
                              "⟦card#k1⟧ thats the card"))
    line("⟦agent#a1⟧", "Please don't share full card numbers in chat – I've asked for this message to be redacted. "
                       "The decline came from your bank (code 05). It may help to call them on the number on the back of the card.")
    if c.rng.random() < 0.6:
        line("⟦first#p1⟧", "fine. also can you update my email, I don't use that one anymore. new one is ⟦email:alt#p1⟧")
        line("⟦agent#a1⟧", "Done – confirmation will go to ⟦email:alt#p1⟧.")
    line("⟦first#p1⟧", "thanks")
    line("⟦agent#a1⟧", "You're welcome! Your chat reference is ⟦pid#ref⟧. Have a good day.")
    c.w("Chat ended by visitor.\n")
    return f"chat_transcript_{c.y}{c.mo:02d}{c.d:02d}_{c.rng.randint(1000, 9999)}.txt"


@template(G1, EN)
def g1_en_unlock(c):
    c.w("From: IT Service Desk <⟦email_role:it#co⟧>\nTo: ⟦name#p1⟧ <⟦email_work#p1⟧>\nCc: ⟦name#p2⟧ <⟦email_work#p2⟧>\n"
        "Subject: RE: Locked out of VPN and email – ticket ⟦pid#t⟧\n\n"
        "Hi ⟦first#p1⟧,\n\n"
        "As discussed on the phone (⟦phone:mob#p1⟧), your account ⟦user#p1⟧ was locked after six failed sign-ins from ⟦ip:pub⟧ at ⟦ts:iso⟧. "
        "That address isn't one of ours, so we've reset your password as a precaution.\n\n"
        "Temporary password: ⟦pw⟧\n\n"
        "You'll be asked to change it at first sign-in. The VPN profile (client ⟦ver⟧) has been re-issued; if it still fails, "
        "call the desk on ⟦phone:land#desk⟧ and quote the ticket number.\n\n"
        "Regards,\n⟦agent⟧\nIT Service Desk | ⟦company⟧\n")
    if c.rng.random() < 0.5:
        c.w("\n-----Original Message-----\nFrom: ⟦name#p1⟧ <⟦email_work#p1⟧>\nSent: ⟦date_long⟧ ⟦time⟧\n\n"
            "Can't get into Outlook or the VPN since this morning. My old password was ⟦pw_human⟧ if that helps. "
            "Please call my mobile ⟦phone:mob#p1⟧.\n")
    return f"RE_ticket_{c.v('pid#t').replace(' ', '').replace('-', '')}.eml"


@template(G1, ["en-US"], weight=1.5)
def g1_us_benefits(c):
    two = c.rng.random() < 0.7
    c.w("From: ⟦name#p1⟧ <⟦email_work#p1⟧>\nTo: Benefits Team <⟦email_role:hr#co⟧>\n"
        "Subject: Open enrollment – adding dependents\nDate: ⟦date_long⟧\n\n"
        "Hi,\n\nI'm adding my spouse and " + ("two kids" if two else "our son" if not c.person("p3")["female"] else "our daughter") + " to the medical and dental plans. The portal keeps rejecting "
        "the form (error ⟦uuid⟧), so here is the information you asked for:\n\n"
        "Employee: ⟦name#p1⟧, SSN ⟦ssn⟧, employee ID ⟦num9⟧\n"
        "Spouse: ⟦first#p2⟧ ⟦last#p1⟧, DOB ⟦date:-9000⟧, SSN ⟦ssn⟧\n"
        "Dependent: ⟦first#p3⟧ ⟦last#p1⟧, DOB ⟦date:-3100⟧, SSN ⟦ssn⟧\n")
    if two:
        c.w("Dependent: ⟦first#p4⟧ ⟦last#p1⟧, DOB ⟦date:-1500⟧, SSN ⟦ssn⟧\n")
    c.w("\nBest number to reach me is my cell, ⟦phone:mob#p1⟧. Our group number on the old card was ⟦claim⟧, if that matters.\n\n"
        "Thanks!\n⟦first#p1⟧\n")
    if c.rng.random() < 0.5:
        c.w("\n> From: Benefits Team <⟦email_role:hr#co⟧>\n> Please send the dependent details by ⟦date:7⟧. Do not include full SSNs in e-mail;\n"
            "> use the secure upload at https://benefits.⟦domain⟧/upload instead.\n")
    return "open_enrollment_dependents.eml"


@template(G1, EN_NOT_US)
def g1_en_refund_bank(c):
    c.use_org("shop")
    c.w("Subject: Refund for returned handset – RMA ⟦pid#rma⟧\nFrom: ⟦email#p1⟧\nTo: ⟦email_role:support⟧\n\n"
        "Hello,\n\nI sent the phone back on ⟦date⟧ (tracking ⟦tracking⟧). The IMEI on the box is ⟦imei⟧ and the one in the settings "
        "menu matches. You said the refund of ⟦amount:200-1200⟧ would go back to my bank because the card I paid with has been cancelled, so "
        "here are the details:\n\nAccount name: ⟦name#p1⟧\nIBAN: ⟦iban#i1⟧\nBIC: " + c.bic() + "\n\n"
        "If you need to call, my number is ⟦phone#p1⟧" + c.pick(".", " (mobile).", " – please don't ring before 9.") + "\n\nCheers,\n⟦name#p1⟧\n")
    return "refund_rma.eml"


@template(G1, ["en-US"], weight=1.2)
def g1_us_tax_chat(c):
    c.w("Secure messaging – ⟦company⟧ Client Portal\nThread: 2023 return questions\n\n"
        "⟦name#p1⟧ · ⟦date⟧ ⟦time⟧\nHi ⟦first#a⟧, sending what you asked for. My SSN is ⟦ssn⟧ and my wife ⟦first#p2⟧'s is ⟦ssn⟧. "
        "Our son started college so we should get the education credit; his is ⟦ssn⟧.\n"
        "Refund can go to the same account as last year (routing ⟦routing⟧).\n\n"
        "⟦name#a⟧, CPA · ⟦date⟧ ⟦time⟧\nGot it, thanks. I've put them in your file. Reminder: the firm EIN on the engagement letter is ⟦ein⟧ – "
        "that's ours, not yours, so don't enter it anywhere. Please call me at ⟦phone#a⟧ if the IRS sends a letter.\n\n"
        "⟦name#p1⟧ · ⟦date:1⟧ ⟦time⟧\nWill do. Also my new email is ⟦email#p1⟧.\n")
    return "portal_thread_export.txt"


@template(G1, EN)
def g1_en_api_support(c):
    c.w("From: ⟦name#p1⟧ <⟦email_work:co2#p1⟧>\nTo: ⟦email_role:support#co⟧\nSubject: Webhooks returning 401 since yesterday\n\n"
        "Hi team,\n\nSince ⟦ts:isoz⟧ every webhook delivery to our endpoint fails with 401. We rotated nothing on our side. "
        "Here is the curl we use to test, maybe you can spot it:\n\n"
        "  curl -X POST https://api.⟦domain⟧/v2/webhooks/test \\\n    -H \"Authorization: Bearer ⟦sec:jwt⟧\" \\\n"
        "    -H \"X-Request-Id: ⟦reqid⟧\"\n\n"
        "Our account is ⟦stripe_id:acct⟧. Our live key is ⟦sec:" + c.pick("stripe_sk", "generic_api", "openai") + "⟧ in case you need to check it.\n\n"
        "Thanks,\n⟦name#p1⟧\nPlatform Engineer\nM: ⟦phone:mob#p1⟧\n")
    return "webhooks_401.eml"



@template(G1, ["de-DE"])
def g1_de_email(c):
    c.use_org("utility")
    c.w("Von: ⟦name#p1⟧ <⟦email#p1⟧>\nAn: ⟦email_role:support⟧\nBetreff: Doppelte Abbuchung – Kundennummer ⟦acct_luhn#kd⟧\n"
        "Datum: ⟦date⟧ ⟦time⟧\n\n" + c.pick("Sehr geehrte Damen und Herren,", "Hallo liebes Service-Team,", "Guten Tag,") + "\n\n"
        "am ⟦date:-4⟧ wurde der Betrag von ⟦amount:20-300⟧ zweimal per Lastschrift von meinem Konto ⟦iban#i1⟧ abgebucht. "
        "Bitte erstatten Sie die doppelte Abbuchung auf dasselbe Konto.\n\nMeine Kundennummer lautet ⟦acct_luhn#kd⟧, "
        "die Rechnungsnummer ⟦inv:RE⟧. Sie erreichen mich tagsüber unter ⟦phone:land#p1⟧ oder mobil unter ⟦phone:mob#p1m⟧.\n\n"
        "Mit freundlichen Grüßen\n⟦name#p1⟧\n⟦addr2#p1⟧\n")
    if c.rng.random() < 0.6:
        c.w("\n-------- Ursprüngliche Nachricht --------\nVon: ⟦company⟧ Kundenservice <⟦email_role:noreply⟧>\n"
            "Betreff: Ihre Rechnung ⟦inv:RE⟧\n\nHallo ⟦name#p1⟧,\nIhre Rechnung steht im Kundenportal bereit. Der Betrag wird "
            "zum ⟦date:-4⟧ per SEPA-Lastschrift eingezogen (Mandatsreferenz ⟦num:10⟧, Gläubiger-ID ⟦cred_id⟧).\n")
    return "AW_Doppelte_Abbuchung.eml"


@template(G1, ["de-DE"])
def g1_de_chat(c):
    c.use_org("shop")
    c.w("Chatprotokoll ⟦company⟧ – Kundenservice\nBeginn: ⟦ts:log⟧\nKunde: ⟦name#p1⟧\n\n")
    c.w("⟦agent#a⟧: Guten Tag, mein Name ist ⟦agent#a⟧. Wie kann ich Ihnen helfen?\n"
        "⟦first#p1⟧: hallo, ich komme nicht mehr in mein Kundenkonto. Passwort zurücksetzen geht nicht, die Mail kommt nie an\n"
        "⟦agent#a⟧: Das tut mir leid. An welche E-Mail-Adresse soll die Mail denn gehen?\n"
        "⟦first#p1⟧: ⟦email#p1⟧, früher hatte ich ⟦email:alt#p1⟧\n"
        "⟦agent#a⟧: Danke. Zur Verifizierung: Wie lautet Ihre hinterlegte Telefonnummer?\n"
        "⟦first#p1⟧: ⟦phone:mob#p1⟧\n"
        "⟦first#p1⟧: " + c.pick("mein altes Passwort war ⟦pw_human⟧, vielleicht hilft das", "Passwort war glaube ich ⟦pw_human⟧",
                                  "ich hab zuletzt ⟦pw_human⟧ benutzt") + "\n"
        "⟦agent#a⟧: Bitte teilen Sie uns niemals Ihr Passwort mit! Ich habe die E-Mail-Adresse aktualisiert, der Link ist unterwegs. "
        "Ihre Vorgangsnummer ist ⟦pid#v⟧.\n⟦first#p1⟧: ok danke\n\nChat beendet: ⟦ts:hms⟧\n")
    return "chat_export_kundenservice.txt"


@template(G1, ["fr-FR"])
def g1_fr_email(c):
    c.use_org("shop")
    c.w("De : ⟦name#p1⟧ <⟦email#p1⟧>\nÀ : ⟦email_role:support⟧\nObjet : Remboursement commande n° ⟦order_luhn#o⟧\nDate : ⟦date_long⟧\n\n"
        + c.pick("Bonjour,", "Madame, Monsieur,", "Bonjour Madame, Monsieur,") + "\n\n"
        "Suite à l'annulation de ma commande n° ⟦order_luhn#o⟧ du ⟦date:-6⟧, je n'ai toujours pas reçu le remboursement de ⟦amount:40-500⟧. "
        "Ma carte bancaire ayant expiré entre-temps, merci d'effectuer un virement sur mon compte :\n\n"
        "Titulaire : ⟦name#p1⟧\nIBAN : ⟦iban#i⟧\nBIC : " + c.bic() + "\n\n"
        "Vous pouvez me joindre au ⟦phone:mob#p1⟧ ou, en journée, au ⟦phone:land#p1f⟧.\n\n"
        "Cordialement,\n⟦name#p1⟧\n⟦addr2#p1⟧\n")
    if c.rng.random() < 0.5:
        c.w("\n> Le ⟦date:-2⟧, Service client ⟦company⟧ <⟦email_role:support⟧> a écrit :\n> Votre dossier n° ⟦pid#d⟧ est en cours de traitement. "
            "Merci de nous transmettre un RIB.\n")
    return "remboursement_commande.eml"


@template(G1, ["fr-FR"])
def g1_fr_chat(c):
    c.use_org("shop")
    c.w("Conversation – Service client ⟦company⟧\nDébut : ⟦ts:iso⟧\n\n"
        "⟦agent#a⟧ : Bonjour et bienvenue ! Comment puis-je vous aider ?\n"
        "⟦first#p1⟧ : bonjour, mon paiement est refusé alors que ma carte fonctionne partout ailleurs\n"
        "⟦agent#a⟧ : Je regarde. Pouvez-vous me donner l'adresse e-mail du compte ?\n"
        "⟦first#p1⟧ : ⟦email#p1⟧\n"
        "⟦first#p1⟧ : et la carte c'est ⟦card#k⟧ exp " + c.exp() + "\n"
        "⟦agent#a⟧ : Merci de ne jamais communiquer le numéro complet de votre carte par chat. Le refus vient de votre banque (code 51). "
        "Je vous conseille de la contacter. Un conseiller peut aussi vous rappeler : à quel numéro ?\n"
        "⟦first#p1⟧ : ⟦phone:mob#p1⟧, plutôt après 18h\n"
        "⟦agent#a⟧ : C'est noté. Référence de votre demande : ⟦pid#r⟧. Bonne journée !\n")
    return "transcription_chat.txt"


@template(G1, ["es-ES"])
def g1_es_email(c):
    c.use_org("shop")
    c.w("De: ⟦name#p1⟧ <⟦email#p1⟧>\nPara: ⟦email_role:support⟧\nAsunto: Devolución pedido ⟦order_luhn#o⟧ – reembolso pendiente\n\n"
        + c.pick("Hola,", "Buenos días:", "Estimados señores:") + "\n\n"
        "El día ⟦date:-10⟧ devolví el pedido ⟦order_luhn#o⟧ (número de seguimiento ⟦tracking⟧) y todavía no he recibido el reembolso de "
        "⟦amount:25-450⟧. Como pagué contra reembolso, os paso mi cuenta para la transferencia:\n\n"
        "Titular: ⟦name#p1⟧\nIBAN: ⟦iban#i⟧\n\n"
        "Mi teléfono es el ⟦phone:mob#p1⟧ por si necesitáis algo más.\n\nUn saludo,\n⟦name#p1⟧\n")
    if c.rng.random() < 0.5:
        c.w("\nEl ⟦date:-3⟧, Atención al cliente de ⟦company⟧ <⟦email_role:support⟧> escribió:\n> Hemos recibido su solicitud con número de "
            "incidencia ⟦pid#inc⟧. Le responderemos en un plazo de 48 horas.\n")
    return "reembolso_pedido.eml"


@template(G1, ["es-ES"])
def g1_es_chat(c):
    c.use_org("insurer")
    c.w("Transcripción del chat – ⟦company⟧\nInicio: ⟦ts:log⟧\n\n"
        "⟦agent#a⟧: ¡Hola! Soy ⟦agent#a⟧, ¿en qué puedo ayudarte?\n"
        "⟦first#p1⟧: hola, quiero cambiar el número de cuenta donde me cobráis la cuota\n"
        "⟦agent#a⟧: Claro. Para verificar tu identidad, ¿me indicas el teléfono y el correo de la cuenta?\n"
        "⟦first#p1⟧: ⟦phone:mob#p1⟧ y ⟦email#p1⟧\n⟦agent#a⟧: Perfecto. ¿Cuál es la nueva cuenta?\n"
        "⟦first#p1⟧: ⟦iban#i⟧\n"
        "⟦agent#a⟧: Hecho. El próximo recibo del ⟦date:15⟧ se cargará en la nueva cuenta. Tu número de gestión es ⟦pid#g⟧.\n"
        "⟦first#p1⟧: genial gracias\n")
    return "chat_atencion_cliente.txt"


@template(G1, ["nl-NL"])
def g1_nl_email(c):
    c.use_org("utility")
    c.w("Van: ⟦name#p1⟧ <⟦email#p1⟧>\nAan: ⟦email_role:support⟧\nOnderwerp: Dubbele afschrijving klantnummer ⟦acct_luhn#k⟧\n\n"
        + c.pick("Beste klantenservice,", "Geachte heer/mevrouw,", "Hallo,") + "\n\n"
        "Op ⟦date:-5⟧ is het maandbedrag van ⟦amount:30-150⟧ twee keer van mijn rekening ⟦iban#i⟧ afgeschreven. Willen jullie het "
        "teveel betaalde bedrag terugstorten op hetzelfde rekeningnummer?\n\nMijn klantnummer is ⟦acct_luhn#k⟧. "
        "Ik ben bereikbaar op ⟦phone:mob#p1⟧" + c.pick(".", " (na 17:00 uur).", " of op mijn werk: ⟦phone:land#w⟧.") + "\n\n"
        "Met vriendelijke groet,\n⟦name#p1⟧\n⟦addr2#p1⟧\n")
    return "dubbele_afschrijving.eml"


@template(G1, ["nl-NL"])
def g1_nl_chat(c):
    c.use_org("shop")
    c.w("Chatgesprek ⟦company⟧ – ⟦ts:iso⟧\n\n"
        "⟦agent#a⟧: Goedemiddag, waarmee kan ik je helpen?\n"
        "⟦first#p1⟧: hoi, mijn pakket is nog steeds niet bezorgd. ordernummer ⟦order_luhn⟧\n"
        "⟦agent#a⟧: Dat is vervelend. Ik zie dat de zending (⟦tracking⟧) bij de vervoerder vastzit. Op welk nummer kan de bezorger je bellen?\n"
        "⟦first#p1⟧: ⟦phone:mob#p1⟧\n"
        "⟦agent#a⟧: Dank je. Ik stuur de bevestiging naar ⟦email#p1⟧, klopt dat nog?\n"
        "⟦first#p1⟧: ja klopt\n⟦agent#a⟧: Top, je referentie is ⟦pid#r⟧. Fijne dag!\n")
    return "chatgesprek.txt"


@template(G1, ["it-IT"])
def g1_it_email(c):
    c.use_org("shop")
    c.w("Da: ⟦name#p1⟧ <⟦email#p1⟧>\nA: ⟦email_role:support⟧\nOggetto: Rimborso ordine n. ⟦order_luhn#o⟧\n\n"
        + c.pick("Gentile Servizio Clienti,", "Buongiorno,", "Spett.le ⟦company⟧,") + "\n\n"
        "in data ⟦date:-8⟧ ho restituito l'ordine n. ⟦order_luhn#o⟧ ma non ho ancora ricevuto il rimborso di ⟦amount:30-600⟧. "
        "Poiché la carta utilizzata è stata bloccata, vi chiedo di effettuare un bonifico sul seguente conto:\n\n"
        "Intestatario: ⟦name#p1⟧\nIBAN: ⟦iban#i⟧\n\n"
        "Per qualsiasi comunicazione potete contattarmi al ⟦phone:mob#p1⟧ oppure allo ⟦phone:land#p1f⟧ (ufficio).\n\n"
        "Cordiali saluti,\n⟦name#p1⟧\n")
    return "richiesta_rimborso.eml"


@template(G1, ["it-IT"])
def g1_it_chat(c):
    c.use_org("shop")
    c.w("Trascrizione chat – ⟦company⟧\nInizio: ⟦ts:log⟧\n\n"
        "⟦agent#a⟧: Buongiorno, sono ⟦agent#a⟧. Come posso aiutarla?\n"
        "⟦first#p1⟧: salve, il pagamento con carta non va a buon fine\n"
        "⟦agent#a⟧: Mi può indicare l'indirizzo e-mail dell'account?\n⟦first#p1⟧: ⟦email#p1⟧\n"
        "⟦first#p1⟧: la carta è ⟦card#k⟧ scadenza " + c.exp() + "\n"
        "⟦agent#a⟧: La prego di non comunicare mai il numero completo della carta in chat. Il rifiuto proviene dalla sua banca. "
        "Se preferisce la richiamiamo: a che numero?\n⟦first#p1⟧: ⟦phone:mob#p1⟧\n"
        "⟦agent#a⟧: Perfetto, il numero della pratica è ⟦pid#p⟧.\n")
    return "chat_assistenza.txt"


@template(G1, ["pl-PL"])
def g1_pl_email(c):
    c.use_org("shop")
    c.w("Od: ⟦name#p1⟧ <⟦email#p1⟧>\nDo: ⟦email_role:support⟧\nTemat: Zwrot pieniędzy za zamówienie nr ⟦order_luhn#o⟧\n\n"
        + c.pick("Dzień dobry,", "Szanowni Państwo,") + "\n\n"
        "dnia ⟦date:-7⟧ " + ("odesłałam" if c.person("p1")["female"] else "odesłałem") + " zamówienie nr ⟦order_luhn#o⟧ (numer przesyłki ⟦tracking⟧). Proszę o zwrot kwoty ⟦amount:50-900⟧ "
        "na mój rachunek bankowy:\n\n⟦name#p1⟧\nnr rachunku: ⟦iban#i⟧\n\n"
        "W razie pytań proszę o kontakt pod numerem ⟦phone:mob#p1⟧.\n\nZ poważaniem\n⟦name#p1⟧\n")
    return "zwrot_zamowienie.eml"


@template(G1, ["pl-PL"])
def g1_pl_chat(c):
    c.use_org("shop")
    c.w("Zapis rozmowy – ⟦company⟧\nRozpoczęcie: ⟦ts:log⟧\n\n"
        "⟦agent#a⟧: Dzień dobry, w czym mogę pomóc?\n"
        "⟦first#p1⟧: dzień dobry, nie mogę się zalogować do konta\n"
        "⟦agent#a⟧: Proszę podać adres e-mail przypisany do konta.\n⟦first#p1⟧: ⟦email#p1⟧\n"
        "⟦first#p1⟧: hasło to było chyba ⟦pw_human⟧\n"
        "⟦agent#a⟧: Proszę nigdy nie podawać hasła na czacie. Wysłaliśmy link do zmiany hasła. Numer zgłoszenia: ⟦pid#z⟧. "
        "W razie problemów prosimy o kontakt: ⟦phone:land#co⟧.\n")
    return "czat_obsluga_klienta.txt"


@template(G1, ["pt-BR"])
def g1_br_email(c):
    c.use_org("shop")
    c.w("De: ⟦name#p1⟧ <⟦email#p1⟧>\nPara: ⟦email_role:support⟧\nAssunto: Estorno em duplicidade – pedido ⟦order_luhn#o⟧\n\n"
        + c.pick("Olá,", "Bom dia,", "Prezados,") + "\n\n"
        "Meu cartão foi cobrado duas vezes no pedido ⟦order_luhn#o⟧ (⟦amount:50-900⟧ cada). O cartão é o ⟦card#k⟧, "
        "validade " + c.exp() + ". Preciso que vocês estornem uma das cobranças.\n\n"
        "Meu celular é ⟦phone:mob#p1⟧ (WhatsApp também).\n\nObrigado,\n⟦name#p1⟧\n")
    if c.rng.random() < 0.5:
        c.w("\nEm ⟦date:-1⟧, SAC ⟦company⟧ <⟦email_role:support⟧> escreveu:\n> Seu protocolo de atendimento é ⟦pid#pr⟧. "
            "Nunca enviamos mensagens pedindo senha ou número completo de cartão.\n")
    return "estorno_duplicidade.eml"


@template(G1, ["pt-BR"])
def g1_br_chat(c):
    c.use_org("shop")
    c.w("Atendimento online – ⟦company⟧\nInício: ⟦ts:iso⟧\n\n"
        "⟦agent#a⟧: Olá! Meu nome é ⟦agent#a⟧, em que posso ajudar?\n"
        "⟦first#p1⟧: oi, quero pagar o boleto atrasado no cartão\n"
        "⟦agent#a⟧: Claro! Qual o e-mail cadastrado?\n⟦first#p1⟧: ⟦email#p1⟧\n"
        "⟦first#p1⟧: cartão ⟦card#k⟧ venc " + c.exp() + "\n"
        "⟦agent#a⟧: Por segurança, não informe o número completo do cartão aqui. Vou te enviar um link de pagamento por SMS. "
        "O número ⟦phone:mob#p1⟧ está correto?\n⟦first#p1⟧: sim\n"
        "⟦agent#a⟧: Enviado! Protocolo ⟦pid#pr⟧.\n")
    return "atendimento_chat.txt"


# ---- clean support documents (no sensitive data) ----
@template(G1, None, clean=True)
def g1_clean_shipping(c):
    c.use_org("shop")
    L = c.L({"en": ("Order status update", "Hello", "your order", "has shipped. Tracking number", "Estimated delivery",
                    "Items", "Questions? Just reply to this message or use the chat on our website.", "The Customer Care Team"),
             "de": ("Statusmeldung zu Ihrer Bestellung", "Hallo", "Ihre Bestellung", "wurde versendet. Sendungsnummer",
                    "Voraussichtliche Zustellung", "Artikel", "Fragen? Antworten Sie einfach auf diese Nachricht.", "Ihr Kundenservice-Team"),
             "fr": ("Suivi de votre commande", "Bonjour", "votre commande", "a été expédiée. Numéro de suivi", "Livraison estimée",
                    "Articles", "Une question ? Répondez simplement à ce message.", "L'équipe Service client"),
             "es": ("Estado de tu pedido", "Hola", "tu pedido", "ha sido enviado. Número de seguimiento", "Entrega estimada",
                    "Artículos", "¿Dudas? Responde a este mensaje.", "El equipo de Atención al cliente"),
             "nl": ("Update over je bestelling", "Hallo", "je bestelling", "is verzonden. Track & trace", "Verwachte levering",
                    "Artikelen", "Vragen? Beantwoord dit bericht.", "Het klantenserviceteam"),
             "it": ("Aggiornamento ordine", "Ciao", "il tuo ordine", "è stato spedito. Numero di tracciamento", "Consegna prevista",
                    "Articoli", "Domande? Rispondi a questo messaggio.", "Il team Assistenza clienti"),
             "pl": ("Status zamówienia", "Dzień dobry", "Twoje zamówienie", "zostało wysłane. Numer przesyłki", "Przewidywana dostawa",
                    "Produkty", "Pytania? Odpowiedz na tę wiadomość.", "Zespół Obsługi Klienta"),
             "pt": ("Atualização do pedido", "Olá", "seu pedido", "foi enviado. Código de rastreio", "Entrega prevista",
                    "Itens", "Dúvidas? É só responder esta mensagem.", "Equipe de Atendimento")})
    c.w(f"{L[0]}\n\n{L[1]} ⟦first#p1⟧,\n\n{L[2]} ⟦order_luhn#o⟧ {L[3]}: ⟦tracking#t⟧.\n{L[4]}: ⟦date:3⟧\n\n{L[5]}:\n")
    for i in range(c.rng.randint(1, 3)):
        c.w(f"  - EAN ⟦ean⟧  x{c.rng.randint(1, 3)}  ⟦amount:5-90⟧\n")
    c.w(f"\n{L[6]}\n\n{L[7]}\n⟦company⟧\n")
    return "order_status.eml"


@template(G1, EN, clean=True)
def g1_clean_chat_device(c):
    c.w("Chat transcript – ⟦company⟧ device support\nStarted ⟦ts:isoz⟧\n\n"
        "⟦agent#a⟧: Hi! What can I help you with?\n⟦first#p1⟧: my phone won't update, stuck on ⟦ver:mobile⟧\n"
        "⟦agent#a⟧: Could you read me the IMEI from Settings > About?\n⟦first#p1⟧: ⟦imei⟧\n"
        "⟦agent#a⟧: Thanks. The update to ⟦ver:mobile⟧ is rolling out in batches; yours is scheduled for ⟦date:2⟧. "
        "Your case number is ⟦pid#c⟧.\n⟦first#p1⟧: ok, cheers\n")
    return "device_support_chat.txt"


# ---------------------------------------------------------------------------
# genre 2: helpdesk tickets
# ---------------------------------------------------------------------------
G2 = "helpdesk_ticket"


@template(G2, EN)
def g2_en_jira_bug(c):
    key = c.pick("PAY", "OPS", "CORE", "WEB") + "-" + str(c.rng.randint(100, 9999))
    c.w(f"[{key}] Export job fails for EU tenants after upgrade to ⟦ver:v⟧\n"
        "Type: Bug    Priority: High    Status: In Progress\nReporter: ⟦name#p1⟧ (⟦email_work#p1⟧)\nAssignee: ⟦name#p2⟧\n"
        "Created: ⟦ts:isoz⟧\n\nDescription\n-----------\nThe nightly export dies halfway through. Log excerpt from worker-3:\n\n{code}\n"
        "⟦ts:log⟧ INFO  export.runner - starting batch tenant=⟦uuid⟧ commit=⟦sha_short⟧\n"
        "⟦ts:log⟧ DEBUG http.client - POST https://api.⟦domain⟧/v1/bulk headers={'Authorization': 'Bearer ⟦sec:"
        + c.pick("jwt", "gh_pat", "generic_api", "sendgrid") + "⟧', 'Content-Type': 'application/json'}\n"
        "⟦ts:log⟧ WARN  export.mapper - skipping row, invalid contact: {\"email\": \"⟦email_foreign#c1⟧\", \"phone\": \"⟦phone_foreign#c1⟧\"}\n"
        "⟦ts:log⟧ ERROR export.runner - connection reset by peer (⟦ip:priv⟧:5432)\n{code}\n\n"
        "Note the debug logger prints the auth header – we should mask that too.\n\n"
        + ("The legacy endpoint fails the same way; raw request from the proxy log:\n\n{noformat}\nGET /legacy/export?tenant=eu HTTP/1.1\n"
           "Host: legacy.⟦domain⟧\nAuthorization: Basic ⟦sec:basic⟧\nCookie: sessionid=⟦sec:hex40⟧; lang=en\nUser-Agent: export-worker/⟦ver:semver⟧\n{noformat}\n\n"
           if c.rng.random() < 0.5 else "") +
        "Comments\n--------\n⟦name#p2⟧ – ⟦date⟧: Reproduced on staging with build ⟦ver:rc⟧. The token in the log above is live, "
        "I've asked ⟦first#p1⟧ to rotate it.\n")
    return f"{key}.txt"


@template(G2, EN)
def g2_en_servicenow(c):
    num = "INC" + rdig(c.rng, 7)
    c.w(f"Incident {num}\nCaller: ⟦name#p1⟧\nCaller e-mail: ⟦email_work#p1⟧\nCallback number: ⟦phone#p1⟧\n"
        "Employee number: ⟦num9⟧\nCategory: Hardware > Mobile device\nConfiguration item: ⟦choice:iPhone 14|Galaxy S23|Pixel 8|iPhone 15 Pro⟧ "
        "(IMEI ⟦imei⟧)\nOpened: ⟦ts:log⟧\nAssignment group: Service Desk L1\n\n"
        "Short description: Company phone lost on the train, needs remote wipe\n\n"
        "Work notes:\n⟦ts:log⟧ ⟦agent#a⟧: Called user back on ⟦phone#p1⟧. Device last seen on ⟦ip:pub⟧ (⟦ts:iso⟧). "
        "Wipe command sent via MDM. Temporary SIM ordered for delivery to ⟦addr#p1⟧.\n"
        "⟦ts:log⟧ ⟦agent#a⟧: User asked to forward all calls to personal mobile ⟦phone:mob#pm⟧ until the new device arrives.\n")
    if c.rng.random() < 0.5:
        c.w("⟦ts:log⟧ ⟦agent#b⟧: Carrier case number ⟦pid#cc⟧ for the SIM block. Closing once the replacement is enrolled.\n")
    return f"{num}.txt"


@template(G2, EN)
def g2_en_zendesk_billing(c):
    c.use_org("shop")
    tid = str(c.rng.randint(100000, 999999))
    c.w(f"Ticket #{tid} – Payment failed / please update card\nRequester: ⟦name#p1⟧ <⟦email#p1⟧>\nChannel: Web form\n"
        "Tags: billing, card_update, vip\n\n"
        "⟦name#p1⟧ (⟦date_long⟧ ⟦time⟧):\nMy subscription renewal failed. Please put it on this card instead: ⟦card#k1⟧, expiry "
        + c.exp() + ". Billing address is ⟦addr#p1⟧. Phone ⟦phone#p1⟧.\n\n"
        "⟦agent#a⟧ (internal note):\nUpdated in the billing system. Removed the card number from the public reply. Old card on file was ⟦mask_card⟧. "
        "Invoice ⟦inv:INV⟧ re-run successfully, charge id ⟦stripe_id:ch⟧.\n\n"
        "⟦agent#a⟧ (public reply):\nHi ⟦first#p1⟧, all done – your subscription is active again. For your security please use the "
        "'Update payment method' page next time rather than e-mail.\n")
    return f"zendesk_{tid}.txt"


@template(G2, ["en-US"], weight=1.2)
def g2_us_payroll(c):
    while True:
        v = gen_ssn(c.rng)
        if v[-1] != v[-2] and v[-1] != "0":
            break
    w = v[:-2] + v[-1] + v[-2]
    wrong = "⟦lit_ssn:" + fmt_ssn(c.rng, w, "dash") + "⟧"
    right = "⟦lit_ssn:" + fmt_ssn(c.rng, v, "dash") + "⟧"
    num = "HR-" + str(c.rng.randint(10000, 99999))
    c.w(f"{num}: W-2 shows wrong SSN\nQueue: Payroll & Benefits    Priority: P2\nSubmitted by: ⟦name#p1⟧ <⟦email_work#p1⟧>    Ext/cell: ⟦phone#p1⟧\n\n"
        "Description:\nMy ⟦choice:2023|2024⟧ W-2 lists my SSN as " + wrong + " but the correct number is " + right + " (last two digits swapped). "
        "My tax preparer says I need a corrected W-2c before I can file. Employee ID ⟦num9⟧, hired ⟦date:-800⟧.\n\n"
        "Activity:\n⟦date⟧ – ⟦name#p2⟧ (Payroll): Verified against the I-9 on file; correct SSN is " + right + ". W-2c requested from "
        "the provider. Employer EIN ⟦ein⟧. ETA 5 business days.\n"
        "⟦date:1⟧ – ⟦name#p2⟧ (Payroll): Also updated direct deposit routing ⟦routing⟧ per employee request.\n")
    return f"{num}.txt"


@template(G2, EN)
def g2_en_access_request(c):
    rid = "REQ" + rdig(c.rng, 7)
    db = c.pick("orders", "crm", "analytics", "billing")
    c.w(f"Request {rid} – Read-only database access for reporting\nRequested for: ⟦name#p1⟧ (⟦email_work#p1⟧)\n"
        "Approver: ⟦name#p2⟧\nState: Closed Complete\n\n"
        f"Fulfilment notes:\nCreated role rpt_{translit(c.person('p1')['first'])} on {db}-replica (⟦ip:priv⟧). Connection details sent by "
        "e-mail because the password vault was down:\n\n"
        f"  host={db}-replica.internal port=5432 dbname={db} user=rpt_{translit(c.person('p1')['first'])} password=⟦pw#dbpw⟧\n\n"
        "User to rotate on first login. In the dbt profile please use ⟦ref:env.password⟧ instead of pasting the password.\n"
        "Closed by ⟦agent⟧ on ⟦date⟧.\n")
    return f"{rid}.txt"


@template(G2, ["de-DE"])
def g2_de_ticket(c):
    c.use_org("utility")
    tid = "#" + str(c.rng.randint(20000, 99999))
    c.w(f"Ticket {tid} – Zugang zum Kundenportal gesperrt\nStatus: offen    Priorität: normal\nKunde: ⟦name#p1⟧\n"
        "E-Mail: ⟦email#p1⟧\nTelefon: ⟦phone#p1⟧\nKundennummer: ⟦acct_luhn⟧\nErstellt: ⟦date⟧ ⟦time⟧\n\n"
        "Beschreibung:\nGuten Tag, seit dem Update auf Version ⟦ver:semver⟧ komme ich nicht mehr ins Portal. Mein Benutzername ist "
        "⟦user#p1⟧, das Passwort ⟦pw_human⟧ wird als falsch angezeigt, obwohl ich es nicht geändert habe.\n"
        "Außerdem möchte ich meine Bankverbindung ändern, neue IBAN: ⟦iban⟧.\n\n"
        "Interne Notiz (⟦agent#a⟧):\nKonto entsperrt, Passwort-Reset-Link an ⟦email#p1⟧ geschickt. Bankdaten NICHT per Ticket ändern – Kunde "
        "muss das SEPA-Mandat neu unterschreiben. Rückruf unter ⟦phone#p1⟧ erfolgt, Vorgangsnummer ⟦pid#v⟧.\n")
    return f"ticket_{tid[1:]}.txt"


@template(G2, ["fr-FR"])
def g2_fr_ticket(c):
    c.use_org("utility")
    tid = "INC-" + rdig(c.rng, 6)
    c.w(f"Ticket {tid}\nObjet : Prélèvement refusé – mise à jour des coordonnées bancaires\nDemandeur : ⟦name#p1⟧ (⟦email#p1⟧)\n"
        "Téléphone : ⟦phone#p1⟧\nPriorité : Moyenne\nOuvert le : ⟦date⟧ à ⟦time⟧\n\n"
        "Message du client :\nBonjour, mon prélèvement du mois dernier a été rejeté car j'ai changé de banque. Voici mon nouvel IBAN : ⟦iban⟧. "
        "Mon numéro client est ⟦acct_luhn⟧.\n\n"
        "Note interne (⟦agent#a⟧) :\nAttention, l'IBAN indiqué dans le premier message (⟦iban_bad⟧) était invalide (clé erronée), le client a "
        "corrigé. Mandat SEPA à faire signer. Rappeler au ⟦phone:mob#p1m⟧.\n")
    return f"{tid}.txt"


@template(G2, ["es-ES"])
def g2_es_ticket(c):
    tid = "TCK-" + rdig(c.rng, 6)
    c.w(f"Incidencia {tid}\nAsunto: No puedo acceder al correo corporativo\nSolicitante: ⟦name#p1⟧ <⟦email_work#p1⟧>\n"
        "Extensión / móvil: ⟦phone:mob#p1⟧\nEquipo: PC-⟦num:5⟧ (⟦ip:priv⟧)\nFecha: ⟦date⟧\n\n"
        "Descripción:\nDesde esta mañana Outlook me pide la contraseña continuamente. He probado con ⟦pw_human⟧ y con la anterior y ninguna funciona.\n\n"
        "Notas del técnico (⟦agent#a⟧):\nCuenta bloqueada por intentos fallidos desde ⟦ip:pub⟧. Restablecida; contraseña temporal: ⟦pw⟧. "
        "Se avisa al usuario por teléfono (⟦phone:mob#p1⟧). Pendiente revisar MFA.\n")
    return f"{tid}.txt"


@template(G2, ["nl-NL"])
def g2_nl_ticket(c):
    c.use_org("utility")
    tid = str(c.rng.randint(100000, 999999))
    c.w(f"Melding {tid} – Storing internetverbinding\nKlant: ⟦name#p1⟧\nE-mail: ⟦email#p1⟧\nTelefoon: ⟦phone#p1⟧\n"
        "Klantnummer: ⟦acct_luhn⟧\nAangemaakt: ⟦date⟧ ⟦time⟧\n\n"
        "Omschrijving klant:\nSinds gisteren geen internet. Modem heeft IP ⟦ip:priv⟧ maar geen verbinding naar buiten. Wifi-wachtwoord heb ik "
        "al teruggezet naar ⟦pw_human⟧, maakt niet uit.\n\n"
        "Notitie medewerker (⟦agent#a⟧):\nStoring in de wijk, monteur ingepland op ⟦date:2⟧. Klant teruggebeld op ⟦phone:mob#p1m⟧. "
        "Terugbetaling van het abonnement naar ⟦iban⟧ na afloop.\n")
    return f"melding_{tid}.txt"


@template(G2, ["it-IT"])
def g2_it_ticket(c):
    c.use_org("shop")
    tid = "TK" + rdig(c.rng, 6)
    c.w(f"Ticket {tid} – Addebito non riconosciuto\nCliente: ⟦name#p1⟧\nE-mail: ⟦email#p1⟧\nCellulare: ⟦phone:mob#p1⟧\n"
        "Aperto il: ⟦date⟧\nPriorità: alta\n\n"
        "Messaggio:\nBuongiorno, sulla mia carta ⟦card#k⟧ vedo un addebito di ⟦amount:20-300⟧ del ⟦date:-2⟧ che non riconosco. "
        "Vi chiedo di verificare e, se necessario, di rimborsarmi sul conto ⟦iban⟧.\n\n"
        "Nota interna (⟦agent#a⟧):\nAddebito riferito all'ordine ⟦order_luhn⟧. Cliente richiamato al ⟦phone:mob#p1⟧, conferma l'acquisto del "
        "figlio. Chiuso senza rimborso. Numero carta rimosso dalla conversazione pubblica.\n")
    return f"{tid}.txt"


@template(G2, ["pl-PL"])
def g2_pl_ticket(c):
    tid = "ZGL/" + str(c.y) + "/" + rdig(c.rng, 5)
    c.w(f"Zgłoszenie {tid}\nTemat: Brak dostępu do VPN\nZgłaszający: ⟦name#p1⟧ (⟦email_work#p1⟧)\nTelefon: ⟦phone#p1⟧\n"
        "Data: ⟦date⟧ ⟦time⟧\n\nOpis:\nPo zmianie hasła nie mogę połączyć się z VPN (klient w wersji ⟦ver:semver⟧). Nowe hasło: ⟦pw_human⟧ – "
        "czy może być za krótkie?\n\nNotatka technika (⟦agent#a⟧):\nHasło nie spełniało polityki. Ustawiono hasło tymczasowe ⟦pw⟧, "
        "użytkownik poinformowany telefonicznie. Logi: ⟦ip:pub⟧, ⟦ts:iso⟧.\n")
    return "zgloszenie_" + tid.replace("/", "_") + ".txt"


@template(G2, ["pt-BR"])
def g2_br_ticket(c):
    tid = str(c.y) + rdig(c.rng, 8)
    c.w(f"Chamado nº {tid}\nAssunto: Reembolso de mensalidade cobrada após cancelamento\nCliente: ⟦name#p1⟧\nE-mail: ⟦email#p1⟧\n"
        "Telefone: ⟦phone#p1⟧\nAberto em: ⟦date⟧ ⟦time⟧\n\nRelato:\nCancelei o plano em ⟦date:-20⟧ e mesmo assim cobraram ⟦amount:40-200⟧ "
        "no cartão ⟦card#k⟧. Quero o estorno.\n\nAnotação interna (⟦agent#a⟧):\nCancelamento confirmado (protocolo ⟦pid#p⟧). Estorno solicitado à "
        "adquirente, prazo de até 2 faturas. Cliente avisado por WhatsApp no ⟦phone:mob#p1⟧.\n")
    return f"chamado_{tid}.txt"


@template(G2, None, clean=True)
def g2_clean_bug(c):
    key = "WEB-" + str(c.rng.randint(100, 9999))
    title = c.L({"en": "Checkout crashes with test card on staging", "de": "Checkout stürzt mit Testkarte auf Staging ab",
                 "fr": "Le paiement plante avec la carte de test en préproduction", "es": "El checkout falla con la tarjeta de prueba en staging",
                 "nl": "Checkout crasht met testkaart op acceptatie", "it": "Il checkout va in errore con la carta di test in staging",
                 "pl": "Checkout wywala się na karcie testowej na stagingu", "pt": "Checkout quebra com cartão de teste em homologação"})
    steps = c.L({"en": "Steps to reproduce", "de": "Schritte zum Reproduzieren", "fr": "Étapes pour reproduire", "es": "Pasos para reproducir",
                 "nl": "Stappen om te reproduceren", "it": "Passi per riprodurre", "pl": "Kroki do odtworzenia", "pt": "Passos para reproduzir"})
    c.w(f"[{key}] {title}\nBuild: ⟦ver:rc⟧ (commit ⟦sha⟧)\nEnvironment: staging, node ⟦ver:node⟧, ⟦ip:priv⟧\n\n{steps}:\n"
        "1. /checkout\n2. ⟦testcard⟧, 12/34, CVC 123\n3. Submit\n\n"
        "Stack trace:\nTypeError: Cannot read properties of undefined (reading 'last4')\n    at formatCard (checkout.js:88:21)\n"
        "    at ⟦ts:isoz⟧ request ⟦reqid⟧\n\nSecret for the staging gateway is read from ⟦ref:vault.key⟧ – not the issue.\n")
    return f"{key}.txt"


@template(G2, EN, clean=True)
def g2_clean_network(c):
    tid = "CHG" + rdig(c.rng, 7)
    c.w(f"Change {tid} – Firewall rule for new reporting server\nPlanned: ⟦date:3⟧ 22:00–23:00\nRisk: Low\n\n"
        "Source: ⟦ip:priv⟧/32\nDestination: ⟦ip:priv⟧:443, ⟦ipv6⟧\nRule id: ⟦uuid⟧\nFirmware: ⟦ver:four⟧\n"
        "Rollback: restore config snapshot ⟦sha256⟧\nRelated case: ⟦pid#c⟧\n")
    return f"{tid}.txt"


# ---------------------------------------------------------------------------
# genre 3: configuration files and .env files
# ---------------------------------------------------------------------------
G3 = "config_env"

CMT = {
    "db": {"en": "Database credentials", "de": "Zugangsdaten Datenbank", "fr": "Identifiants base de données",
           "es": "Credenciales de la base de datos", "nl": "Databasegegevens", "it": "Credenziali database",
           "pl": "Dane dostępowe do bazy", "pt": "Credenciais do banco de dados"},
    "mail": {"en": "Outgoing mail", "de": "E-Mail-Versand", "fr": "Envoi des e-mails", "es": "Configuración de correo",
             "nl": "E-mailinstellingen", "it": "Impostazioni e-mail", "pl": "Ustawienia poczty", "pt": "Configuração de e-mail"},
    "pay": {"en": "Payment provider", "de": "Zahlungsanbieter", "fr": "Prestataire de paiement", "es": "Pasarela de pago",
            "nl": "Betaalprovider", "it": "Gateway di pagamento", "pl": "Bramka płatności", "pt": "Gateway de pagamento"},
    "nocommit": {"en": "do not commit!", "de": "nicht einchecken!", "fr": "ne pas committer !", "es": "¡no subir al repo!",
                 "nl": "niet committen!", "it": "non committare!", "pl": "nie commitować!", "pt": "não commitar!"},
    "support": {"en": "Support contact shown in the footer", "de": "Support-Kontakt für den Footer", "fr": "Contact support affiché en pied de page",
                "es": "Contacto de soporte que aparece en el pie", "nl": "Supportcontact in de footer", "it": "Contatto assistenza nel footer",
                "pl": "Kontakt do wsparcia w stopce", "pt": "Contato do suporte exibido no rodapé"},
    "bank": {"en": "Company bank account for payouts", "de": "Firmenkonto für Auszahlungen", "fr": "Compte de l'entreprise pour les virements",
             "es": "Cuenta de la empresa para pagos", "nl": "Bedrijfsrekening voor uitbetalingen", "it": "Conto aziendale per i bonifici",
             "pl": "Rachunek firmowy do wypłat", "pt": "Conta da empresa para repasses"},
    "old": {"en": "old key, still used by the cron job", "de": "alter Schlüssel, wird noch vom Cronjob benutzt",
            "fr": "ancienne clé, encore utilisée par le cron", "es": "clave antigua, la usa todavía el cron",
            "nl": "oude sleutel, nog in gebruik door de cronjob", "it": "vecchia chiave, ancora usata dal cron",
            "pl": "stary klucz, nadal używany przez crona", "pt": "chave antiga, ainda usada pelo cron"},
}


def cm(c, key):
    return c.L(CMT[key])


@template(G3, None, weight=2.0)
def g3_dotenv(c):
    db = c.pick("shop", "app", "crm", "billing", "portal")
    user = c.pick("app", db + "_user", "web", "postgres", "svc_" + db)
    c.w(f"# {c.v('company')} – production\n# {cm(c, 'nocommit')}\nAPP_ENV=production\nAPP_VERSION=⟦ver:semver⟧\nAPP_DEBUG=false\n\n"
        f"# {cm(c, 'db')}\n")
    style = c.rng.random()
    if style < 0.4:
        c.w(f"DATABASE_URL=postgres://{user}:⟦pw_url#db⟧@db.internal:5432/{db}\n")
    elif style < 0.7:
        c.w(f"DB_HOST=⟦ip:priv⟧\nDB_PORT=3306\nDB_DATABASE={db}\nDB_USERNAME={user}\nDB_PASSWORD=⟦pw#db⟧\n")
    else:
        c.w(f"DB_HOST=db.internal\nDB_USER={user}\nDB_PASSWORD=\"⟦pw#db⟧\"\n")
    c.w(f"REDIS_URL=redis://:⟦pw_url#redis⟧@cache.internal:6379/0\n\n# {cm(c, 'pay')}\n"
        "STRIPE_PUBLISHABLE_KEY=⟦pk_live⟧\nSTRIPE_SECRET_KEY=⟦sec:stripe_sk⟧\nSTRIPE_WEBHOOK_SECRET=⟦sec:stripe_whsec⟧\n\n"
        f"# {cm(c, 'mail')}\nMAIL_MAILER=smtp\nMAIL_HOST=smtp.⟦choice:sendgrid.net|mailgun.org|office365.com|eu.mailgun.org⟧\nMAIL_PORT=587\n"
        "MAIL_USERNAME=⟦email_role:noreply⟧\nMAIL_PASSWORD=⟦sec:" + c.pick("sendgrid", "mailgun", "password") + "⟧\n"
        "MAIL_FROM_ADDRESS=\"⟦email_role:noreply⟧\"\n\n")
    if c.rng.random() < 0.7:
        c.w("AWS_ACCESS_KEY_ID=⟦sec:aws_akid⟧\nAWS_SECRET_ACCESS_KEY=⟦sec:aws_secret⟧\nAWS_DEFAULT_REGION=eu-central-1\n"
            "AWS_BUCKET=" + db + "-uploads-prod\n\n")
    c.w(f"# {cm(c, 'support')}\nSUPPORT_EMAIL=⟦email_role:support⟧\nSUPPORT_PHONE=\"⟦phone:land#sup⟧\"\n\n")
    if c.rng.random() < 0.6:
        c.w(f"# {cm(c, 'old')}\n# OPENAI_API_KEY=⟦sec:openai⟧\nOPENAI_API_KEY=⟦sec:openai⟧\n")
    if c.rng.random() < 0.4:
        c.w("BACKUP_GPG_PASSPHRASE=\"⟦phrase⟧\"\n")
    c.w("GOOGLE_MAPS_API_KEY=⟦ph:key⟧\nSENTRY_RELEASE=⟦sha_short⟧\n")
    return c.pick(".env", ".env.production", ".env.local", "app/.env")


@template(G3, None)
def g3_compose(c):
    c.w("version: \"3.9\"\nservices:\n  db:\n    image: postgres:⟦ver:pg⟧\n    restart: unless-stopped\n    environment:\n"
        "      POSTGRES_DB: app\n      POSTGRES_USER: app\n      POSTGRES_PASSWORD: \"⟦pw#pg⟧\"\n    volumes:\n      - pgdata:/var/lib/postgresql/data\n\n"
        "  app:\n    image: registry.⟦domain⟧/app@⟦digest⟧\n    depends_on: [db]\n    environment:\n"
        "      DATABASE_URL: postgresql://app:⟦pw#pg⟧@db:5432/app\n      SECRET_KEY_BASE: ⟦sec:rails⟧\n"
        "      SMTP_USER: ⟦email_role:noreply⟧\n      SMTP_PASSWORD: ⟦ref:env.password⟧\n      ADMIN_EMAIL: ⟦email_work#p1⟧\n"
        f"      # {cm(c, 'support')}\n      SUPPORT_PHONE: \"⟦phone_e164#s⟧\"\n    ports:\n      - \"8080:3000\"\n\n"
        "  mailpit:\n    image: axllent/mailpit:⟦ver:v⟧\n\nvolumes:\n  pgdata: {}\n")
    return "docker-compose.yml"


@template(G3, None)
def g3_k8s_secret(c):
    app = c.pick("payments", "webshop", "crm", "notifier")
    c.w(f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {app}-secrets\n  namespace: prod\ntype: Opaque\nstringData:\n"
        "  DB_PASSWORD: \"⟦pw#db⟧\"\n  SLACK_BOT_TOKEN: \"⟦sec:slack_bot⟧\"\n  TWILIO_AUTH_TOKEN: \"⟦sec:twilio_token⟧\"\n"
        "  TWILIO_ACCOUNT_SID: \"⟦twilio_sid:AC⟧\"\n  JWT_SIGNING_KEY: \"⟦sec:hex40⟧\"\n---\n"
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {app}-config\n  namespace: prod\ndata:\n"
        "  SMS_SENDER: \"⟦phone_e164#sms⟧\"\n  ONCALL_EMAIL: \"⟦email_work#p1⟧\"\n  ONCALL_PHONE: \"⟦phone:mob#p1⟧\"\n"
        "  API_BASE: \"https://api.⟦domain⟧/v1\"\n  BUILD: \"⟦ver:v⟧\"\n---\n"
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {app}\nspec:\n  template:\n    spec:\n      containers:\n"
        f"        - name: {app}\n          image: ghcr.io/acme/{app}:⟦ver:semver⟧\n          env:\n            - name: STRIPE_SECRET_KEY\n"
        "              valueFrom:\n                secretKeyRef:\n                  name: stripe\n                  key: ⟦ref:name.key⟧\n")
    return f"k8s/{app}.yaml"


@template(G3, None)
def g3_spring(c):
    c.w("spring:\n  datasource:\n    url: jdbc:postgresql://⟦ip:priv⟧:5432/core\n    username: core_app\n    password: ⟦pw#ds⟧\n"
        "  mail:\n    host: smtp.office365.com\n    port: 587\n    username: ⟦email_role:noreply⟧\n    password: '⟦pw_human⟧'\n"
        f"# {cm(c, 'support')}\napp:\n  support:\n    email: ⟦email_role:support⟧\n    phone: \"⟦phone:land#s⟧\"\n"
        "  security:\n    jwt-secret: ⟦sec:generic_api⟧\n    admin-password: ${ADMIN_PASSWORD:⟦ph:password⟧}\n"
        "  integrations:\n    maps-key: ⟦sec:gcp_api⟧\n    github-token: ⟦ref:env.token⟧\n")
    return "src/main/resources/application-prod.yml"


@template(G3, None)
def g3_appsettings(c):
    c.w("{\n  \"Logging\": { \"LogLevel\": { \"Default\": \"Information\" } },\n  \"ConnectionStrings\": {\n"
        "    \"Default\": \"Server=tcp:sql-prod.database.windows.net,1433;Initial Catalog=Orders;User ID=ordersvc;Password=⟦pw#sql⟧;Encrypt=True;\",\n"
        "    \"Storage\": \"DefaultEndpointsProtocol=https;AccountName=ordersprod;AccountKey=⟦sec:azure_key⟧;EndpointSuffix=core.windows.net\"\n  },\n"
        "  \"SendGrid\": { \"ApiKey\": \"⟦sec:sendgrid⟧\", \"From\": \"⟦email_role:noreply⟧\" },\n"
        "  \"Twilio\": { \"AccountSid\": \"⟦twilio_sid:AC⟧\", \"AuthToken\": \"⟦sec:twilio_token⟧\", \"FromNumber\": \"⟦phone_e164#tw⟧\" },\n"
        "  \"Admin\": { \"Email\": \"⟦email_work#p1⟧\", \"Phone\": \"⟦phone#p1⟧\" },\n"
        "  \"KeyVault\": { \"PaymentKey\": \"⟦ref:kv.key⟧\" },\n  \"AppVersion\": \"⟦ver:four⟧\"\n}\n")
    return "appsettings.Production.json"


@template(G3, None)
def g3_aws_creds(c):
    c.w("[default]\naws_access_key_id = ⟦sec:aws_akid⟧\naws_secret_access_key = ⟦sec:aws_secret⟧\n\n")
    if c.rng.random() < 0.5:
        c.w("[sso-admin]\naws_access_key_id = ⟦sec:aws_akid⟧\naws_secret_access_key = ⟦sec:aws_secret⟧\naws_session_token = ⟦sec:aws_session⟧\n\n")
    c.w("[legacy-docs]\n# copied from the AWS docs, not a real key\naws_access_key_id = ⟦example_key:aws_id⟧\naws_secret_access_key = ⟦example_key:aws_secret⟧\n")
    return c.pick("home/deploy/.aws/credentials", ".aws/credentials")


@template(G3, None)
def g3_dotfiles(c):
    kind = c.pick("npmrc", "pypirc", "netrc", "gitcred", "docker")
    if kind == "npmrc":
        c.w("registry=https://registry.npmjs.org/\n@acme:registry=https://npm.pkg.github.com\n//npm.pkg.github.com/:_authToken=⟦sec:gh_pat⟧\n"
            "//registry.npmjs.org/:_authToken=⟦sec:npm⟧\nemail=⟦email_work#p1⟧\nalways-auth=true\n")
        return ".npmrc"
    if kind == "pypirc":
        c.w("[distutils]\nindex-servers =\n    pypi\n    internal\n\n[pypi]\nusername = __token__\npassword = ⟦sec:pypi⟧\n\n"
            "[internal]\nrepository = https://nexus.⟦domain⟧/repository/pypi-internal/\nusername = ⟦user#p1⟧\npassword = ⟦pw⟧\n")
        return ".pypirc"
    if kind == "netrc":
        c.w("machine ftp.⟦domain⟧\n  login ⟦email_work#p1⟧\n  password ⟦pw⟧\nmachine api.github.com\n  login ⟦user#p1⟧\n  password ⟦sec:gh_pat⟧\n"
            "machine git.⟦domain⟧\n  login ⟦user#p1⟧\n  password ⟦sec:glpat⟧\n")
        return ".netrc"
    if kind == "gitcred":
        c.w("https://⟦user#p1⟧:⟦sec:gh_pat⟧@github.com\nhttps://oauth2:⟦sec:glpat⟧@gitlab.⟦domain⟧\n")
        return ".git-credentials"
    user = c.v("user#p1")
    pw = c.v("pw#dk")
    c.t("{\n  \"auths\": {\n    \"registry.gitlab.com\": {\n      \"auth\": \"")
    c.e("secret", basic_b64(user, pw))
    c.w("\"\n    },\n    \"ghcr.io\": {\n      \"auth\": \"")
    c.e("secret", basic_b64(user, c.v("sec:gh_pat#g")))
    c.w("\"\n    }\n  },\n  \"credsStore\": \"\"\n}\n")
    return ".docker/config.json"


@template(G3, None)
def g3_gcp_sa(c):
    proj = c.pick("billing-prod", "shop-analytics", "crm-etl", "data-platform") + "-" + rdig(c.rng, 6)
    sa = c.pick("etl-runner", "firebase-adminsdk-" + rs(c.rng, LOW + DIG, 5), "bq-export", "cloud-run-invoker")
    c.w("{\n  \"type\": \"service_account\",\n  \"project_id\": \"" + proj + "\",\n  \"private_key_id\": \"⟦sha⟧\",\n"
        "  \"private_key\": \"⟦sec:pem_json⟧\\n\",\n  \"client_email\": \"⟦email_role:noreply#cosa⟧\",\n"
        "  \"client_id\": \"1" + rdig(c.rng, 20) + "\",\n  \"auth_uri\": \"https://accounts.google.com/o/oauth2/auth\",\n"
        "  \"token_uri\": \"https://oauth2.googleapis.com/token\"\n}\n")
    # the service-account address is in the project's domain, overwrite the role address
    for i, (val, lab) in enumerate(c.pieces):
        if lab == ("E", "email") and "@" in val:
            c.pieces[i] = (f"{sa}@{proj}.iam.gserviceaccount.com", lab)
    return f"{proj}-sa.json"


@template(G3, ["de-DE", "fr-FR", "es-ES", "nl-NL", "it-IT", "pl-PL", "en-GB", "pt-BR"])
def g3_billing_yaml(c):
    c.w(f"# billing.yaml – {c.v('company')}\ninvoice:\n  prefix: \"⟦choice:RE|FA|INV|FV|NF⟧\"\n  due_days: 14\n"
        f"  # {cm(c, 'bank')}\n  creditor:\n    name: \"⟦company⟧\"\n    iban: \"⟦iban:home#own⟧\"\n    bic: \"" + c.bic() + "\"\n")
    if c.loc == "de-DE":
        c.w("    creditor_id: \"⟦cred_id⟧\"\n    vat_id: \"⟦vatde⟧\"\n")
    c.w("  contact:\n    email: ⟦email_role:billing⟧\n    phone: \"⟦phone:land#b⟧\"\n"
        "  test_fixtures:\n    # invalid on purpose – validator must reject\n    bad_iban: \"⟦iban_bad⟧\"\n"
        "payment_gateway:\n  api_key: ⟦sec:" + c.pick("stripe_sk", "generic_api") + "⟧\n  webhook_secret: ⟦ref:env.key⟧\n")
    return "config/billing.yaml"


@template(G3, None)
def g3_tfvars(c):
    c.w("region          = \"eu-central-1\"\nenvironment     = \"prod\"\ndb_instance     = \"db.t3.medium\"\n"
        "db_password     = \"⟦pw#tf⟧\"\ndatadog_api_key = \"⟦sec:datadog⟧\"\ncloudflare_token = \"⟦sec:generic_api⟧\"\n"
        "alert_emails    = [\"⟦email_work#p1⟧\", \"⟦email_work#p2⟧\"]\npager_phone     = \"⟦phone_e164#p1⟧\"\n"
        "allowed_cidrs   = [\"⟦ip:priv⟧/32\", \"⟦ip:doc⟧/32\"]\nami_id          = \"ami-" + rs(c.rng, HEXL, 17) + "\"\n")
    return "terraform/prod.tfvars"


@template(G3, None, clean=True)
def g3_clean_env_example(c):
    c.w(f"# Copy to .env and fill in. {cm(c, 'nocommit')}\nAPP_ENV=local\nAPP_VERSION=⟦ver:semver⟧\n\n# {cm(c, 'db')}\n"
        "DB_HOST=127.0.0.1\nDB_USERNAME=app\nDB_PASSWORD=⟦ph:password⟧\n\n# {pay}\nSTRIPE_SECRET_KEY=⟦ph:key⟧\nSTRIPE_WEBHOOK_SECRET=⟦ph:key⟧\n"
        "GITHUB_TOKEN=⟦ph:token⟧\nAWS_ACCESS_KEY_ID=⟦example_key:aws_id⟧\nAWS_SECRET_ACCESS_KEY=⟦example_key:aws_secret⟧\n"
        "SLACK_BOT_TOKEN=⟦example_key:slack⟧\nSMTP_PASSWORD=⟦ref:env.password⟧\nSENTRY_RELEASE=⟦sha_short⟧\n".replace("{pay}", cm(c, "pay")))
    return ".env.example"


@template(G3, None, clean=True)
def g3_clean_workflow(c):
    c.w("name: deploy\non:\n  push:\n    branches: [main]\njobs:\n  deploy:\n    runs-on: ubuntu-22.04\n    steps:\n"
        "      - uses: actions/checkout@v4\n      - uses: actions/setup-node@v4\n        with:\n          node-version: ⟦ver:node⟧\n"
        "      - run: npm ci\n        env:\n          NPM_TOKEN: ⟦ref:gha.token⟧\n      - name: Deploy\n        env:\n"
        "          AWS_ACCESS_KEY_ID: ⟦ref:gha.key⟧\n          AWS_SECRET_ACCESS_KEY: ⟦ref:gha.key⟧\n          DB_PASSWORD: ⟦ref:gha.password⟧\n"
        "        run: ./scripts/deploy.sh --release ⟦sha_short⟧\n")
    return ".github/workflows/deploy.yml"


@template(G3, None, clean=True)
def g3_clean_nginx(c):
    c.w("upstream app {\n    server ⟦ip:priv⟧:8080 max_fails=3;\n    server ⟦ip:priv⟧:8080 max_fails=3;\n}\n\nserver {\n    listen 443 ssl http2;\n"
        "    server_name www.⟦domain⟧;\n    ssl_certificate     /etc/letsencrypt/live/⟦domain⟧/fullchain.pem;\n"
        "    ssl_certificate_key /etc/letsencrypt/live/⟦domain⟧/privkey.pem;\n    set_real_ip_from ⟦ip:doc⟧;\n"
        "    allow ⟦ipv6⟧;\n    location / { proxy_pass http://app; }\n    # config rev ⟦sha_short⟧, nginx ⟦ver:nginx⟧\n}\n")
    return "nginx/sites-enabled/app.conf"


@template(G3, None, clean=True)
def g3_clean_ansible(c):
    c.w("---\n# group_vars/prod.yml\napp_version: \"⟦ver:semver⟧\"\ndb_host: \"⟦ip:priv⟧\"\ndb_password: \"⟦ref:jinja.password⟧\"\n"
        "smtp_password: \"⟦ref:jinja.password⟧\"\nstripe_key: \"⟦ref:vault.key⟧\"\naws_secret: \"⟦ref:awssm.key⟧\"\n"
        "deploy_key_pub: \"⟦pubkey⟧\"\nrepo: \"⟦gitssh⟧\"\n")
    return "group_vars/prod.yml"


# ---------------------------------------------------------------------------
# genre 4: shell history and CI logs
# ---------------------------------------------------------------------------
G4 = "shell_ci_log"

BENIGN_CMDS = ["ls -la", "cd ~/src/⟦choice:api|shop|infra|etl⟧", "git status", "git pull --rebase", "git checkout ⟦sha_short⟧",
               "docker ps", "kubectl get pods -n prod", "htop", "df -h", "tail -f /var/log/syslog", "ping -c 3 ⟦ip:priv⟧",
               "ssh ⟦prompt⟧", "npm install ⟦pkg⟧", "git log --oneline -5", "cat /etc/os-release", "vim config/app.yml",
               "docker pull nginx@⟦digest⟧", "curl -I https://www.⟦domain⟧", "sudo systemctl restart nginx", "history | grep ssh",
               "terraform plan -var-file=prod.tfvars", "git clone ⟦gitssh⟧", "make test", "python3 -m venv .venv", "exit"]


def shell_secret_cmds(c):
    u = c.v("user#p1")
    return [
        "export AWS_ACCESS_KEY_ID=⟦sec:aws_akid⟧",
        "export AWS_SECRET_ACCESS_KEY=⟦sec:aws_secret⟧",
        "mysql -h ⟦ip:priv⟧ -u root -p'⟦pw#my⟧' shop",
        "mysql -uadmin -p⟦pw_url#my2⟧ -e 'show databases'",
        f"curl -u {u}:⟦pw_url#cu⟧ https://jenkins.⟦domain⟧/api/json",
        "curl -H \"Authorization: Bearer ⟦sec:jwt⟧\" https://api.⟦domain⟧/v1/orders?limit=5",
        "curl -s -H 'X-Api-Key: ⟦sec:generic_api⟧' https://api.⟦domain⟧/health",
        f"git clone https://{u}:⟦sec:gh_pat⟧@github.com/acme/billing.git",
        "echo ⟦sec:gh_pat⟧ | docker login ghcr.io -u " + u + " --password-stdin",
        "docker login -u " + u + " -p ⟦pw#dl⟧ registry.⟦domain⟧",
        "psql \"postgresql://report:⟦pw_url#pg⟧@⟦ip:priv⟧:5432/analytics\"",
        "kubectl create secret generic db-creds --from-literal=username=app --from-literal=password='⟦pw#k8⟧'",
        "vault login ⟦sec:vault⟧",
        "gh auth login --with-token <<< ⟦sec:gh_oauth⟧",
        "heroku config:set SENDGRID_API_KEY=⟦sec:sendgrid⟧ -a shop-prod",
        "export OPENAI_API_KEY=⟦sec:openai⟧",
        "export ANTHROPIC_API_KEY=⟦sec:anthropic⟧",
        "sshpass -p '⟦pw_human⟧' ssh admin@⟦ip:priv⟧",
        "redis-cli -h cache.internal -a ⟦pw_url#rd⟧ ping",
        "export HF_TOKEN=⟦sec:hf⟧",
        "doctl auth init -t ⟦sec:do⟧",
        "curl -X POST -H 'Content-type: application/json' --data '{\"text\":\"deploy done\"}' ⟦sec:slack_webhook⟧",
        "git config --global user.email \"⟦email_work#p1⟧\"",
        "mongosh \"mongodb+srv://admin:⟦pw_url#mg⟧@cluster0." + rs(c.rng, LOW + DIG, 5) + ".mongodb.net/prod\"",
        "npm config set //registry.npmjs.org/:_authToken ⟦sec:npm⟧",
        "curl -s -H \"Authorization: Basic ⟦sec:basic⟧\" https://nexus.⟦domain⟧/service/rest/v1/status",
        "gpg --batch --yes --passphrase '⟦phrase⟧' -d backup-⟦date_iso⟧.tar.gz.gpg | tar xz",
        "openssl enc -d -aes-256-cbc -pbkdf2 -in customers.sql.enc -out customers.sql -k '⟦phrase⟧'",
        "7z x export.7z -p'⟦pw_human⟧'",
    ]


@template(G4, None, weight=2.0)
def g4_bash_history(c):
    secrets = shell_secret_cmds(c)
    chosen = c.rng.sample(secrets, c.rng.randint(3, 6))
    benign = c.rng.sample(BENIGN_CMDS, c.rng.randint(6, 12))
    allc = chosen + benign
    c.rng.shuffle(allc)
    zsh = c.rng.random() < 0.35
    for cmd in allc:
        if zsh:
            c.w(": ⟦ts:epoch⟧:0;" + cmd + "\n")
        else:
            c.w(cmd + "\n")
    return c.pick("home/" + c.v("user#p1") + "/.bash_history", "root/.bash_history") if not zsh else "home/" + c.v("user#p1") + "/.zsh_history"


@template(G4, None)
def g4_powershell(c):
    c.w("Get-ChildItem C:\\Deploy\nConnect-AzAccount\n$pw = ConvertTo-SecureString '⟦pw#ps⟧' -AsPlainText -Force\n"
        "$cred = New-Object System.Management.Automation.PSCredential ('CORP\\svc_backup', $pw)\n"
        "Invoke-Command -ComputerName ⟦host⟧ -Credential $cred -ScriptBlock { Get-Service }\n"
        "$env:AZURE_STORAGE_KEY = '⟦sec:azure_key⟧'\n"
        "Invoke-RestMethod -Uri https://api.⟦domain⟧/v2/users -Headers @{ Authorization = 'Bearer ⟦sec:jwt⟧' }\n"
        "Send-MailMessage -To ⟦email_work#p1⟧ -From ⟦email_role:noreply⟧ -Subject 'Backup OK' -SmtpServer smtp.⟦domain⟧\n"
        "Test-NetConnection ⟦ip:priv⟧ -Port 1433\n[System.Environment]::OSVersion.Version  # ⟦ver:win⟧\n")
    return "AppData/Roaming/Microsoft/Windows/PowerShell/PSReadLine/ConsoleHost_history.txt"


@template(G4, None, weight=1.5)
def g4_github_actions(c):
    def L(line):
        c.w("⟦ts:gha⟧ " + line + "\n")
    L("##[group]Run actions/checkout@v4")
    L("Syncing repository: acme/" + c.pick("webshop", "payments-api", "mobile-backend"))
    L("##[endgroup]")
    L("##[group]Run npm ci")
    L("npm WARN deprecated ⟦pkg⟧: this version is no longer supported")
    L("added " + str(c.rng.randint(300, 1500)) + " packages in " + str(c.rng.randint(8, 60)) + "s")
    L("##[endgroup]")
    L("##[group]Run ./scripts/smoke-test.sh")
    L("  NPM_TOKEN: ⟦mask_ci⟧")
    L("  DEPLOY_ENV: production")
    kk = c.pick("generic_api", "sendgrid", "gcp_api", "stripe_sk")
    L("+ echo \"Using API key ⟦sec:" + kk + "#k⟧\"")
    L("Using API key ⟦sec:" + kk + "#k⟧")
    L("+ curl -sf -u ci-bot:⟦pw_url#ci⟧ https://staging.⟦domain⟧/health")
    L("{\"status\":\"ok\",\"version\":\"⟦ver:semver⟧\",\"commit\":\"⟦sha⟧\"}")
    L("Notifying on-call ⟦email_work#p1⟧ (⟦phone_e164#p1⟧)")
    L("##[endgroup]")
    L("Post job cleanup.")
    L("[command]/usr/bin/git version")
    L("git version ⟦ver:git⟧")
    return "ci/logs/job_" + rdig(c.rng, 11) + ".log"


@template(G4, None)
def g4_gitlab_ci(c):
    c.w("Running with gitlab-runner ⟦ver:runner⟧ (⟦sha_short⟧)\n  on docker-runner-03 ⟦sha_short⟧\nPreparing the \"docker\" executor\n"
        "Using docker image sha256:⟦sha256⟧ for python:3.12-slim\nGetting source from Git repository\n"
        "Checking out ⟦sha_short⟧ as detached HEAD (ref is main)...\n$ echo \"Deploying to $CI_ENVIRONMENT_NAME\"\nDeploying to production\n"
        "$ export DATABASE_URL=\"postgres://deploy:⟦pw_url#db⟧@⟦ip:priv#db⟧:5432/app\"\n$ echo $DATABASE_URL\n"
        "postgres://deploy:⟦pw_url#db⟧@⟦ip:priv#db⟧:5432/app\n$ python manage.py migrate --noinput\nOperations to perform:\n"
        "  Apply all migrations: admin, auth, billing\nRunning migrations:\n  No migrations to apply.\n"
        "$ curl --fail -H \"PRIVATE-TOKEN: ⟦sec:glpat⟧\" \"$CI_API_V4_URL/projects/$CI_PROJECT_ID/releases\"\n"
        "$ ./notify.sh --to ⟦email_work#p1⟧\nMail sent to ⟦email_work#p1⟧\nCleaning up project directory and file based variables\n"
        "Job succeeded\n")
    return "gitlab-ci-job-" + rdig(c.rng, 9) + ".log"


@template(G4, None)
def g4_jenkins(c):
    c.w("Started by user ⟦name#p1⟧\nRunning as SYSTEM\nBuilding in workspace /var/lib/jenkins/workspace/backup-nightly\n"
        "[backup-nightly] $ /bin/sh -xe /tmp/jenkins" + rdig(c.rng, 16) + ".sh\n+ date\n⟦ts:log⟧\n"
        "+ mysqldump -h ⟦ip:priv⟧ -u backup -p⟦pw_url#bk⟧ --all-databases\n+ gzip -9\n"
        "+ aws s3 cp /tmp/all.sql.gz s3://backups-prod/⟦date_iso⟧/ --sse\n"
        "upload: ../../tmp/all.sql.gz to s3://backups-prod/⟦date_iso⟧/all.sql.gz\n"
        "+ curl -s -X POST https://api.telegram.org/bot⟦sec:telegram⟧/sendMessage -d chat_id=-100" + _non_luhn(c.rng, 10) + " -d text=backup_ok\n"
        "{\"ok\":true,\"result\":{\"message_id\":" + str(c.rng.randint(1000, 99999)) + "}}\nFinished: SUCCESS\n")
    return "jenkins/backup-nightly/" + str(c.rng.randint(100, 999)) + "/console.log"


APPLOG_MSG = {
    "pay_fail": {"en": "payment authorisation failed", "de": "Zahlungsautorisierung fehlgeschlagen", "fr": "échec de l'autorisation de paiement",
                 "es": "fallo en la autorización del pago", "nl": "betaalautorisatie mislukt", "it": "autorizzazione pagamento fallita",
                 "pl": "autoryzacja płatności nieudana", "pt": "falha na autorização do pagamento"},
    "signup": {"en": "new customer registered", "de": "neuer Kunde registriert", "fr": "nouveau client inscrit", "es": "nuevo cliente registrado",
               "nl": "nieuwe klant geregistreerd", "it": "nuovo cliente registrato", "pl": "zarejestrowano nowego klienta", "pt": "novo cliente cadastrado"},
    "sms": {"en": "sending OTP via SMS", "de": "sende Einmalcode per SMS", "fr": "envoi du code par SMS", "es": "enviando código por SMS",
            "nl": "verificatiecode verstuurd via sms", "it": "invio codice OTP via SMS", "pl": "wysyłka kodu SMS", "pt": "enviando código por SMS"},
    "sepa": {"en": "SEPA mandate created", "de": "SEPA-Mandat angelegt", "fr": "mandat SEPA créé", "es": "mandato SEPA creado",
             "nl": "SEPA-machtiging aangemaakt", "it": "mandato SEPA creato", "pl": "utworzono polecenie zapłaty SEPA", "pt": "mandato SEPA criado"},
    "iban_invalid": {"en": "IBAN rejected", "de": "IBAN abgelehnt", "fr": "IBAN refusé", "es": "IBAN rechazado", "nl": "IBAN geweigerd",
                     "it": "IBAN rifiutato", "pl": "IBAN odrzucony", "pt": "IBAN recusado"},
    "retry": {"en": "retrying request", "de": "wiederhole Anfrage", "fr": "nouvelle tentative", "es": "reintentando petición",
              "nl": "verzoek opnieuw", "it": "nuovo tentativo", "pl": "ponawiam żądanie", "pt": "repetindo requisição"},
}


@template(G4, None, weight=2.0)
def g4_app_log(c):
    n = c.rng.randint(5, 9)
    js = c.rng.random() < 0.5
    for i in range(n):
        ev = c.rng.choice(["pay_fail", "pay_fail", "signup", "sms", "sepa", "retry", "retry"] + (["ssn", "ssn", "ssn"] if c.loc == "en-US" else [])
                          + (["iban_invalid"] if c.loc not in ("en-US", "en-IN", "en-AU", "pt-BR") else []))
        if ev == "sepa" and c.loc in ("en-US", "en-IN", "en-AU", "pt-BR"):
            ev = "signup"
        lvl = {"pay_fail": "ERROR", "retry": "WARN"}.get(ev, "INFO")
        if ev == "ssn":
            msg, fields = "identity check submitted", [("applicant_email", f"⟦email#r{i}⟧"), ("ssn", f"⟦ssn#s{i}⟧"), ("dob", "⟦date:-9000⟧")]
        elif ev == "iban_invalid":
            msg, fields = c.L(APPLOG_MSG["iban_invalid"]), [("iban", "⟦iban_bad⟧"), ("reason", "checksum"), ("customer", f"⟦email#r{i}⟧")]
        else:
            msg = c.L(APPLOG_MSG[ev])
            fields = {"pay_fail": [("card", f"⟦card#k{i}⟧"), ("order", "⟦order_luhn⟧"), ("ip", "⟦ip:pub⟧")],
                      "signup": [("email", f"⟦email#r{i}⟧"), ("phone", f"⟦phone_e164#r{i}⟧"), ("user_id", "⟦uuid⟧")],
                      "sms": [("to", f"⟦phone_e164#r{i}⟧"), ("sid", "⟦twilio_sid:SM⟧")],
                      "sepa": [("iban", f"⟦iban_compact#b{i}⟧"), ("mandate", "⟦num:10⟧"), ("customer", f"⟦email#r{i}⟧")],
                      "retry": [("request_id", "⟦reqid⟧"), ("attempt", str(c.rng.randint(2, 5))), ("upstream", "⟦ip:priv⟧:8443")]}[ev]
        if js:
            body = ", ".join(f"\"{k}\":\"{v}\"" for k, v in fields)
            c.w("{\"ts\":\"⟦ts:isoz⟧\",\"level\":\"" + lvl.lower() + "\",\"msg\":\"" + msg + "\"," + body + "}\n")
        else:
            body = " ".join(f"{k}={v}" for k, v in fields)
            c.w("⟦ts:log⟧ " + lvl.ljust(5) + " [" + c.pick("checkout", "accounts", "notify", "billing") + "] " + msg + " " + body + "\n")
    return c.pick("logs/app-⟦date_iso⟧.log", "var/log/app/production.log", "logs/service.jsonl").replace("⟦date_iso⟧", "%d-%02d-%02d" % (c.y, c.mo, c.d))


@template(G4, None, clean=True)
def g4_clean_ci(c):
    c.w("Run actions/setup-python@v5\n  with:\n    python-version: ⟦ver:python⟧\n  env:\n    PYPI_TOKEN: ⟦mask_ci⟧\n    SLACK_WEBHOOK: ⟦mask_ci⟧\n"
        "Successfully set up CPython (⟦ver:python⟧)\nCollecting requests==⟦ver:requests⟧\nBuilt wheel for app: filename=app-⟦ver:semver⟧-py3-none-any.whl "
        "size=18211 sha256=⟦sha256⟧\nPushing image ghcr.io/acme/app@⟦digest⟧\nDeployed revision ⟦sha⟧ at ⟦ts:isoz⟧\n"
        "Smoke test against ⟦ip:priv⟧ passed (request ⟦reqid⟧)\n")
    return "ci/build.log"


@template(G4, None, clean=True)
def g4_clean_history(c):
    for cmd in c.rng.sample(BENIGN_CMDS, 10):
        c.w(cmd + "\n")
    c.w("export DB_PASSWORD=⟦ref:sh.password⟧\naws secretsmanager get-secret-value --secret-id ⟦ref:awssm.password⟧\n"
        "export STRIPE_KEY=$(op read ⟦ref:op.key⟧)\n")
    return "home/dev/.bash_history"


# ---------------------------------------------------------------------------
# genre 5: source code
# ---------------------------------------------------------------------------
G5 = "source_code"

CC = {
    "todo_env": {"en": "TODO: move to environment variables before release", "de": "TODO: vor dem Release in Umgebungsvariablen auslagern",
                 "fr": "TODO : déplacer dans les variables d'environnement avant la mise en prod", "es": "TODO: mover a variables de entorno antes de publicar",
                 "nl": "TODO: naar omgevingsvariabelen verplaatsen voor de release", "it": "TODO: spostare nelle variabili d'ambiente prima del rilascio",
                 "pl": "TODO: przenieść do zmiennych środowiskowych przed wydaniem", "pt": "TODO: mover para variáveis de ambiente antes do deploy"},
    "temp": {"en": "temporary, for the demo", "de": "nur vorübergehend für die Demo", "fr": "temporaire, pour la démo", "es": "temporal, para la demo",
             "nl": "tijdelijk, voor de demo", "it": "temporaneo, per la demo", "pl": "tymczasowo, na demo", "pt": "temporário, para a demo"},
    "seed": {"en": "Seed data copied from production export", "de": "Testdaten aus dem Produktivexport kopiert", "fr": "Données copiées depuis l'export de prod",
             "es": "Datos copiados de la exportación de producción", "nl": "Testdata gekopieerd uit productie-export", "it": "Dati copiati dall'export di produzione",
             "pl": "Dane skopiowane z eksportu produkcyjnego", "pt": "Dados copiados do export de produção"},
    "admin": {"en": "Notify these people on errors", "de": "Diese Personen bei Fehlern benachrichtigen", "fr": "Prévenir ces personnes en cas d'erreur",
              "es": "Avisar a estas personas en caso de error", "nl": "Deze mensen waarschuwen bij fouten", "it": "Avvisare queste persone in caso di errore",
              "pl": "Powiadamiaj te osoby o błędach", "pt": "Avisar estas pessoas em caso de erro"},
    "valid": {"en": "valid examples", "de": "gültige Beispiele", "fr": "exemples valides", "es": "ejemplos válidos", "nl": "geldige voorbeelden",
              "it": "esempi validi", "pl": "poprawne przykłady", "pt": "exemplos válidos"},
    "invalid": {"en": "wrong check digits", "de": "falsche Prüfziffer", "fr": "clé de contrôle erronée", "es": "dígitos de control incorrectos",
                "nl": "verkeerde controlecijfers", "it": "cifre di controllo errate", "pl": "błędne cyfry kontrolne", "pt": "dígitos verificadores errados"},
    "testcards": {"en": "Stripe test cards from the docs", "de": "Stripe-Testkarten aus der Doku", "fr": "cartes de test Stripe de la doc",
                  "es": "tarjetas de prueba de Stripe (documentación)", "nl": "Stripe-testkaarten uit de docs", "it": "carte di test Stripe dalla documentazione",
                  "pl": "karty testowe Stripe z dokumentacji", "pt": "cartões de teste do Stripe da documentação"},
}


def cc(c, key):
    return c.L(CC[key])


@template(G5, None)
def g5_django_settings(c):
    c.w("from pathlib import Path\nimport os\n\nBASE_DIR = Path(__file__).resolve().parent.parent\n\n"
        f"# {cc(c, 'todo_env')}\nSECRET_KEY = \"⟦sec:django⟧\"\nDEBUG = False\nALLOWED_HOSTS = [\"www.⟦domain⟧\", \"⟦ip:priv⟧\"]\n\n"
        f"# {cc(c, 'admin')}\nADMINS = [(\"⟦name#p1⟧\", \"⟦email_work#p1⟧\"), (\"⟦name#p2⟧\", \"⟦email_work#p2⟧\")]\n\n"
        "DATABASES = {\n    \"default\": {\n        \"ENGINE\": \"django.db.backends.postgresql\",\n        \"NAME\": \"shop\",\n"
        "        \"USER\": \"shop\",\n        \"PASSWORD\": \"⟦pw#db⟧\",\n        \"HOST\": \"db.internal\",\n    },\n"
        "    \"replica\": {\n        \"ENGINE\": \"django.db.backends.postgresql\",\n        \"NAME\": \"shop\",\n"
        "        \"PASSWORD\": os.environ[\"⟦ref:name.password⟧\"],\n    },\n}\n\n"
        "EMAIL_HOST = \"smtp.⟦domain⟧\"\nEMAIL_HOST_USER = \"⟦email_role:noreply⟧\"\nEMAIL_HOST_PASSWORD = \"⟦pw_human⟧\"\n"
        "DEFAULT_FROM_EMAIL = \"⟦company⟧ <⟦email_role:noreply⟧>\"\n\nAWS_ACCESS_KEY_ID = \"⟦sec:aws_akid⟧\"\n"
        "AWS_SECRET_ACCESS_KEY = \"⟦sec:aws_secret⟧\"\nSTRIPE_PUBLIC_KEY = \"⟦pk_live⟧\"\nSTRIPE_SECRET_KEY = os.getenv(\"STRIPE_SECRET_KEY\", \"⟦sec:stripe_sk⟧\")\n"
        "SUPPORT_PHONE = \"⟦phone:land#sup⟧\"\n")
    return c.pick("shop/settings/production.py", "config/settings.py")


@template(G5, None)
def g5_ts_client(c):
    c.w("import axios from 'axios';\n\n" + f"// {cc(c, 'temp')}\n" +
        "const API_KEY = '⟦sec:" + c.pick("generic_api", "openai", "anthropic", "gcp_api") + "⟧';\n"
        "const SLACK_WEBHOOK = '⟦sec:slack_webhook⟧';\n\nexport const client = axios.create({\n  baseURL: 'https://api.⟦domain⟧/v3',\n"
        "  timeout: 10_000,\n  headers: {\n    Authorization: `Bearer ${API_KEY}`,\n    'X-Client-Version': '⟦ver:semver⟧',\n  },\n});\n\n"
        "export async function notifyOps(message: string) {\n  await axios.post(SLACK_WEBHOOK, { text: message });\n}\n\n"
        "export const SUPPORT = {\n  email: '⟦email_role:support⟧',\n  phone: '⟦phone#sup⟧',\n  hotline: 'tel:⟦phone_e164#sup⟧',\n};\n")
    return c.pick("src/api/client.ts", "web/src/lib/api.ts")


@template(G5, None)
def g5_java_repo(c):
    c.w("package com.acme.billing.db;\n\nimport java.sql.Connection;\nimport java.sql.DriverManager;\nimport java.sql.SQLException;\n\n"
        "public final class LegacyDb {\n" + f"    // {cc(c, 'todo_env')}\n" +
        "    private static final String URL = \"jdbc:mysql://⟦ip:priv⟧:3306/billing?user=billing_rw&password=⟦pw_url#j⟧&useSSL=true\";\n"
        "    private static final String REPORT_USER = \"report\";\n    private static final String REPORT_PASSWORD = \"⟦pw#r⟧\";\n"
        "    private static final String ALERT_MAIL = \"⟦email_work#p1⟧\";\n\n"
        "    public static Connection open() throws SQLException {\n        return DriverManager.getConnection(URL);\n    }\n\n"
        "    public static Connection openReport() throws SQLException {\n"
        "        return DriverManager.getConnection(\"jdbc:mysql://⟦ip:priv⟧:3306/billing\", REPORT_USER, REPORT_PASSWORD);\n    }\n}\n")
    return "src/main/java/com/acme/billing/db/LegacyDb.java"


@template(G5, None)
def g5_go_client(c):
    c.w("package notify\n\nimport (\n\t\"net/http\"\n\t\"net/url\"\n\t\"strings\"\n)\n\n" + f"// {cc(c, 'temp')}\n" +
        "const (\n\ttwilioSID   = \"⟦twilio_sid:AC⟧\"\n\ttwilioToken = \"⟦sec:twilio_token⟧\"\n\tfromNumber  = \"⟦phone_e164#from⟧\"\n)\n\n"
        "var oncall = []string{\"⟦phone_e164#o1⟧\", \"⟦phone_e164#o2⟧\"}\n\n"
        "func SendSMS(to, body string) error {\n\tform := url.Values{\"To\": {to}, \"From\": {fromNumber}, \"Body\": {body}}\n"
        "\treq, _ := http.NewRequest(\"POST\", \"https://api.twilio.com/2010-04-01/Accounts/\"+twilioSID+\"/Messages.json\", strings.NewReader(form.Encode()))\n"
        "\treq.SetBasicAuth(twilioSID, twilioToken)\n\treq.Header.Set(\"Content-Type\", \"application/x-www-form-urlencoded\")\n"
        "\t_, err := http.DefaultClient.Do(req)\n\treturn err\n}\n")
    return "internal/notify/sms.go"


@template(G5, None)
def g5_csharp_mail(c):
    c.w("using System.Net;\nusing System.Net.Mail;\n\nnamespace Acme.Reports\n{\n    public static class Mailer\n    {\n"
        f"        // {cc(c, 'todo_env')}\n"
        "        private const string SmtpUser = \"⟦email_role:noreply⟧\";\n        private const string SmtpPassword = \"⟦pw#smtp⟧\";\n\n"
        "        public static void SendDailyReport(string path)\n        {\n            using var client = new SmtpClient(\"smtp.office365.com\", 587)\n"
        "            {\n                EnableSsl = true,\n                Credentials = new NetworkCredential(SmtpUser, SmtpPassword)\n            };\n"
        "            var msg = new MailMessage(SmtpUser, \"⟦email_work#p1⟧\", \"Daily report\", \"See attachment.\");\n"
        "            msg.CC.Add(\"⟦email_work#p2⟧\");\n            msg.Attachments.Add(new Attachment(path));\n            client.Send(msg);\n        }\n    }\n}\n")
    return "src/Acme.Reports/Mailer.cs"


@template(G5, None)
def g5_wp_config(c):
    c.w("<?php\n/** " + cc(c, "todo_env") + " */\ndefine( 'DB_NAME', 'wp_" + c.pick("shop", "blog", "site") + "' );\ndefine( 'DB_USER', 'wpuser' );\n"
        "define( 'DB_PASSWORD', '⟦pw#wp⟧' );\ndefine( 'DB_HOST', '⟦ip:priv⟧' );\ndefine( 'DB_CHARSET', 'utf8mb4' );\n\n"
        "define( 'AUTH_KEY',         '⟦sec:wp_salt⟧' );\ndefine( 'SECURE_AUTH_KEY',  '⟦sec:wp_salt⟧' );\n"
        "define( 'LOGGED_IN_KEY',    '⟦sec:wp_salt⟧' );\ndefine( 'NONCE_KEY',        '⟦sec:wp_salt⟧' );\n\n"
        "define( 'WPMS_SMTP_USER', '⟦email_role:info⟧' );\ndefine( 'WPMS_SMTP_PASS', '⟦pw_human⟧' );\n"
        "define( 'WP_DEBUG', false );\n$table_prefix = 'wp_';\nrequire_once ABSPATH . 'wp-settings.php';\n")
    return "wp-config.php"


@template(G5, None, weight=1.5)
def g5_sql_seed(c):
    c.w(f"-- {cc(c, 'seed')} ⟦date⟧\nINSERT INTO customers (id, name, email, phone, iban, created_at) VALUES\n")
    n = c.rng.randint(3, 6)
    for i in range(n):
        pay = f"'⟦iban_compact#b{i}⟧'" if c.loc not in ("en-US", "en-IN", "en-AU", "pt-BR") else "NULL"
        c.w(f"  ({c.rng.randint(1000, 99999)}, '⟦name#r{i}⟧', '⟦email#r{i}⟧', '⟦phone#r{i}⟧', {pay}, '⟦ts:logdot⟧')" + (",\n" if i < n - 1 else ";\n"))
    if c.loc == "en-US":
        c.w("\nINSERT INTO applicants (customer_id, ssn, dob) VALUES\n")
        for i in range(c.rng.randint(2, 4)):
            c.w(f"  ({c.rng.randint(1000, 99999)}, '⟦ssn#s{i}⟧', '⟦date_iso:-{c.rng.randint(7000, 20000)}⟧'),\n")
        c.pieces[-1] = (c.pieces[-1][0].rstrip(",\n") + ";\n", None) if c.pieces[-1][1] is None else c.pieces[-1]
    c.w("\nINSERT INTO payment_methods (customer_id, pan, exp) VALUES\n  (" + str(c.rng.randint(1000, 99999)) + ", '⟦card_compact#k1⟧', '"
        + c.exp() + "');\n")
    return c.pick("db/seeds/customers.sql", "migrations/V42__seed_customers.sql", "test/fixtures/customers.sql")


@template(G5, None)
def g5_ruby_seeds(c):
    c.w("# frozen_string_literal: true\n" + f"# {cc(c, 'seed')}\n\nStripe.api_key = '⟦sec:stripe_sk⟧'\n\n")
    for i in range(c.rng.randint(2, 4)):
        c.w(f"User.create!(\n  name: '⟦name#r{i}⟧',\n  email: '⟦email#r{i}⟧',\n  phone: '⟦phone#r{i}⟧',\n  password: '⟦pw_human#u{i}⟧'\n)\n")
    c.w("\nAdminUser.find_or_create_by!(email: '⟦email_work#a⟧') { |u| u.password = ENV.fetch('ADMIN_PASSWORD') }\n")
    return "db/seeds.rb"


@template(G5, None)
def g5_iban_tests(c):
    c.w("import pytest\n\nfrom payments.validation import is_valid_iban\n\n" + f"# {cc(c, 'valid')}\nVALID = [\n")
    for i in range(c.rng.randint(3, 5)):
        c.w(f"    \"⟦iban_foreign#v{i}⟧\",\n" if i % 2 else f"    \"⟦iban#v{i}⟧\",\n")
    c.w("]\n\n" + f"# {cc(c, 'invalid')}\nINVALID = [\n")
    for i in range(c.rng.randint(2, 4)):
        c.w("    \"⟦iban_bad⟧\",\n")
    c.w("    \"\",\n    \"XX00\",\n]\n\n\n@pytest.mark.parametrize(\"iban\", VALID)\ndef test_valid(iban):\n    assert is_valid_iban(iban)\n\n\n"
        "@pytest.mark.parametrize(\"iban\", INVALID)\ndef test_invalid(iban):\n    assert not is_valid_iban(iban)\n")
    return "tests/test_iban.py"


@template(G5, None)
def g5_deploy_sh(c):
    c.w("#!/usr/bin/env bash\nset -euo pipefail\n\n" + f"# {cc(c, 'temp')}\n" +
        "export GITHUB_TOKEN=\"⟦sec:" + c.pick("gh_pat", "gh_fine") + "⟧\"\nREGISTRY_PASSWORD='⟦pw#reg⟧'\nNOTIFY=\"⟦email_work#p1⟧\"\n\n"
        "echo \"$REGISTRY_PASSWORD\" | docker login registry.⟦domain⟧ -u deploy --password-stdin\n"
        "docker build -t registry.⟦domain⟧/app:\"$1\" .\ndocker push registry.⟦domain⟧/app:\"$1\"\n"
        "ssh deploy@⟦ip:priv⟧ \"cd /srv/app && docker compose pull && docker compose up -d\"\n"
        "curl -s -H \"Authorization: token $GITHUB_TOKEN\" -d '{\"tag_name\":\"'\"$1\"'\"}' https://api.github.com/repos/acme/app/releases\n"
        "mail -s \"deployed $1\" \"$NOTIFY\" < /dev/null\n")
    return "scripts/deploy.sh"


@template(G5, None)
def g5_kotlin_const(c):
    c.w("package com.acme.app\n\nobject BuildConfigSecrets {\n" + f"    // {cc(c, 'todo_env')}\n" +
        "    const val MAPS_API_KEY = \"⟦sec:gcp_api⟧\"\n    const val OAUTH_CLIENT_SECRET = \"⟦sec:gcp_oauth⟧\"\n"
        "    const val SUPPORT_PHONE = \"⟦phone_e164#s⟧\"\n    const val SUPPORT_MAIL = \"⟦email_role:support⟧\"\n"
        "    const val APP_VERSION = \"⟦ver:semver⟧\"\n}\n")
    return "app/src/main/java/com/acme/app/BuildConfigSecrets.kt"


@template(G5, None)
def g5_py_sshkey(c):
    c.w("import paramiko\nimport io\n\n" + f"# {cc(c, 'temp')}\n" + "DEPLOY_KEY = \"\"\"⟦sec:pem⟧\n\"\"\"\n\n"
        "def connect(host=\"⟦ip:priv⟧\", user=\"deploy\"):\n    key = paramiko.RSAKey.from_private_key(io.StringIO(DEPLOY_KEY))\n"
        "    client = paramiko.SSHClient()\n    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())\n"
        "    client.connect(host, username=user, pkey=key)\n    return client\n")
    return "tools/remote.py"


@template(G5, None, clean=True)
def g5_clean_payment_tests(c):
    c.w("import { describe, it, expect } from 'vitest';\nimport { luhnValid, brand } from '../src/cards';\n\n" + f"// {cc(c, 'testcards')}\n"
        "const VISA = '⟦testcard:4242424242424242⟧';\nconst MASTERCARD = '⟦testcard:5555555555554444⟧';\nconst AMEX = '⟦testcard:378282246310005⟧';\n"
        "const DECLINED = '⟦testcard:4000000000000002⟧';\n\ndescribe('cards', () => {\n  it('accepts test numbers', () => {\n"
        "    [VISA, MASTERCARD, AMEX, DECLINED].forEach((n) => expect(luhnValid(n)).toBe(true));\n  });\n"
        "  it('rejects a barcode that happens to pass Luhn when brand is unknown', () => {\n    expect(brand('⟦ean⟧')).toBeNull();\n  });\n"
        "  it('reads the key from env', () => {\n    expect(process.env.⟦ref:name.key⟧).toBeDefined();\n  });\n});\n")
    return "test/cards.test.ts"


@template(G5, None, clean=True)
def g5_clean_env_loader(c):
    c.w("import os\n\n\nclass Settings:\n    \"\"\"" + cc(c, "todo_env") + "\"\"\"\n\n"
        "    db_password = os.environ.get(\"DB_PASSWORD\", \"⟦ph:password⟧\")\n    api_key = os.environ[\"⟦ref:name.key⟧\"]\n"
        "    vault_path = \"⟦ref:vault.password⟧\"\n    sm_arn = \"⟦ref:awssm.key⟧\"\n    version = \"⟦ver:semver⟧\"\n"
        "    build = \"⟦sha⟧\"\n    example_key = \"⟦example_key:stripe⟧\"  # from the Stripe docs\n")
    return "app/settings.py"


# ---------------------------------------------------------------------------
# genre 6: CSV exports
# ---------------------------------------------------------------------------
G6 = "csv_export"

HDR = {
    "contacts": {"en": ["Name", "Email", "Phone", "Company", "City", "Created", "Customer No"],
                 "de": ["Name", "E-Mail", "Telefon", "Firma", "Ort", "Angelegt am", "Kundennr."],
                 "fr": ["Nom", "E-mail", "Téléphone", "Société", "Ville", "Créé le", "N° client"],
                 "es": ["Nombre", "Correo electrónico", "Teléfono", "Empresa", "Ciudad", "Fecha alta", "Nº cliente"],
                 "nl": ["Naam", "E-mailadres", "Telefoon", "Bedrijf", "Plaats", "Aangemaakt", "Klantnummer"],
                 "it": ["Nome", "Email", "Telefono", "Azienda", "Città", "Creato il", "Cod. cliente"],
                 "pl": ["Imię i nazwisko", "E-mail", "Telefon", "Firma", "Miasto", "Data utworzenia", "Nr klienta"],
                 "pt": ["Nome", "E-mail", "Telefone", "Empresa", "Cidade", "Cadastro", "Cód. cliente"]},
    "payments": {"en": ["date", "order_id", "card_number", "expiry", "amount", "status"],
                 "de": ["Datum", "Bestellnummer", "Kartennummer", "Gültig bis", "Betrag", "Status"],
                 "fr": ["date", "n_commande", "numero_carte", "expiration", "montant", "statut"],
                 "es": ["fecha", "pedido", "numero_tarjeta", "caducidad", "importe", "estado"],
                 "nl": ["datum", "bestelnummer", "kaartnummer", "vervaldatum", "bedrag", "status"],
                 "it": ["data", "ordine", "numero_carta", "scadenza", "importo", "stato"],
                 "pl": ["data", "nr_zamowienia", "numer_karty", "waznosc", "kwota", "status"],
                 "pt": ["data", "pedido", "numero_cartao", "validade", "valor", "status"]},
    "sepa": {"en": ["Name", "IBAN", "BIC", "Amount", "Mandate reference", "Reference"],
             "de": ["Kontoinhaber", "IBAN", "BIC", "Betrag", "Mandatsreferenz", "Verwendungszweck"],
             "fr": ["Titulaire", "IBAN", "BIC", "Montant", "RUM", "Libellé"],
             "es": ["Titular", "IBAN", "BIC", "Importe", "Referencia mandato", "Concepto"],
             "nl": ["Naam", "IBAN", "BIC", "Bedrag", "Machtigingskenmerk", "Omschrijving"],
             "it": ["Intestatario", "IBAN", "BIC", "Importo", "Rif. mandato", "Causale"],
             "pl": ["Odbiorca", "IBAN", "BIC", "Kwota", "Nr mandatu", "Tytuł"],
             "pt": ["Titular", "IBAN", "BIC", "Valor", "Ref. mandato", "Descrição"]},
    "orders": {"en": ["order", "email", "phone", "ean", "qty", "tracking"],
               "de": ["Auftrag", "E-Mail", "Telefon", "EAN", "Menge", "Sendungsnummer"],
               "fr": ["commande", "email", "telephone", "ean", "qte", "suivi"],
               "es": ["pedido", "email", "telefono", "ean", "uds", "seguimiento"],
               "nl": ["order", "email", "telefoon", "ean", "aantal", "trackingcode"],
               "it": ["ordine", "email", "telefono", "ean", "qta", "tracking"],
               "pl": ["zamowienie", "email", "telefon", "ean", "ilosc", "nr_przesylki"],
               "pt": ["pedido", "email", "telefone", "ean", "qtd", "rastreio"]},
}


def csv_sep(c):
    return "," if c.lang == "en" else ";"


def csv_q(val_tok, c, force=False):
    return ('"' + val_tok + '"') if (force or c.rng.random() < 0.3) else val_tok


@template(G6, None, weight=1.5)
def g6_contacts(c):
    sep = csv_sep(c)
    h = c.L(HDR["contacts"])
    c.t(sep.join(h) + "\n")
    for i in range(c.rng.randint(6, 12)):
        row = [f"⟦name#r{i}⟧", f"⟦email#r{i}⟧" if c.rng.random() < 0.7 else f"⟦email_work:co{i % 3}#r{i}⟧",
               (f"⟦phone#r{i}⟧" if c.rng.random() < 0.85 else f"⟦phone_foreign#r{i}⟧") if c.rng.random() < 0.9 else "", f"⟦company#co{i % 3}⟧", f"⟦city#r{i}⟧", "⟦date:-" + str(c.rng.randint(1, 900)) + "⟧",
               "⟦acct_luhn⟧" if c.rng.random() < 0.5 else str(c.rng.randint(1000, 99999))]
        c.w(sep.join(csv_q(x, c) if x and i % 2 else x for x in row) + "\n")
    return c.pick("export_contacts.csv", "crm_export_%d%02d%02d.csv" % (c.y, c.mo, c.d), "kontakte.csv" if c.lang == "de" else "contacts.csv")


@template(G6, None, weight=2.0)
def g6_payments(c):
    sep = csv_sep(c)
    c.t(sep.join(c.L(HDR["payments"])) + "\n")
    for i in range(c.rng.randint(6, 12)):
        card = f"⟦card#k{i}⟧" if c.rng.random() < 0.75 else "⟦mask_card⟧"
        st = c.rng.choice(["captured", "captured", "declined", "refunded"])
        amt = fmt_amount(c.loc, c.rng.uniform(5, 800), sym=False)
        if sep == ",":
            amt = amt.replace(",", "")
        c.w(sep.join(["⟦date⟧", "⟦order_luhn⟧", card, c.exp(), amt, st]) + "\n")
    return c.pick("payments_export.csv", "transactions.csv", "pos_batch_%d.csv" % c.rng.randint(100, 999))


@template(G6, ["de-DE", "fr-FR", "es-ES", "nl-NL", "it-IT", "pl-PL", "en-GB"], weight=1.5)
def g6_sepa(c):
    sep = ";" if c.lang != "en" else ","
    c.t(sep.join(c.L(HDR["sepa"])) + "\n")
    for i in range(c.rng.randint(6, 12)):
        ib = f"⟦iban#b{i}⟧" if c.rng.random() < 0.9 else "⟦iban_bad⟧"
        amt = fmt_amount(c.loc, c.rng.uniform(9, 400), sym=False)
        if sep == ",":
            amt = amt.replace(",", "")
        c.w(sep.join([f"⟦name_rev#r{i}⟧" if sep == ";" else f"⟦name#r{i}⟧", ib, c.bic(), amt, "M-" + rdig(c.rng, 8), "⟦inv:RE⟧"]) + "\n")
    return c.pick("sepa_lastschrift.csv" if c.lang == "de" else "sepa_batch.csv", "payouts.csv", "mandates_export.csv")


@template(G6, ["en-US"], weight=2.5)
def g6_us_employees(c):
    c.t("employee_id,first_name,last_name,ssn,email,phone,hire_date,zip\n")
    for i in range(c.rng.randint(10, 16)):
        c.w(f"⟦num9⟧,⟦first#r{i}⟧,⟦last#r{i}⟧,⟦ssn#s{i}⟧,⟦email_work#r{i}⟧,⟦phone#r{i}⟧,⟦date:-{c.rng.randint(10, 4000)}⟧,"
            + ("⟦zip4⟧" if c.rng.random() < 0.5 else c.v(f"zip#r{i}")) + "\n")
    return c.pick("hris_export.csv", "employees_%d.csv" % c.y, "payroll_census.csv")


@template(G6, ["en-US"], weight=1.2)
def g6_us_1099(c):
    c.t("Recipient Name,TIN,TIN Type,Address,Email,Box 1 Nonemployee Comp\n")
    for i in range(c.rng.randint(6, 12)):
        if c.rng.random() < 0.75:
            tin, tt = f"⟦ssn#s{i}⟧", "SSN"
        else:
            tin, tt = "⟦ein⟧", "EIN"
        c.w(f"⟦name#r{i}⟧,{tin},{tt},\"⟦addr#r{i}⟧\",⟦email#r{i}⟧,{c.rng.randint(600, 45000)}.00\n")
    return "1099_nec_recipients.csv"


@template(G6, None)
def g6_orders(c):
    sep = csv_sep(c)
    c.t(sep.join(c.L(HDR["orders"])) + "\n")
    for i in range(c.rng.randint(5, 9)):
        c.w(sep.join(["⟦order_luhn⟧", f"⟦email#r{i}⟧", f"⟦phone:mob#r{i}⟧", "⟦upc⟧" if c.loc == "en-US" else "⟦ean⟧", str(c.rng.randint(1, 4)), "⟦tracking⟧"]) + "\n")
    return c.pick("orders_shipping.csv", "fulfilment_export.csv")


@template(G6, None, clean=True)
def g6_clean_products(c):
    sep = csv_sep(c)
    h = c.L({"en": "sku,name,ean,upc,price,updated", "de": "Artikelnr;Bezeichnung;EAN;UPC;Preis;Geändert",
             "fr": "ref;designation;ean;upc;prix;maj", "es": "ref;descripcion;ean;upc;precio;actualizado",
             "nl": "artikel;omschrijving;ean;upc;prijs;gewijzigd", "it": "codice;descrizione;ean;upc;prezzo;aggiornato",
             "pl": "indeks;nazwa;ean;upc;cena;zmiana", "pt": "sku;descricao;ean;upc;preco;atualizado"})
    c.t(h + "\n")
    items = c.L({"en": ["Espresso beans 1kg", "USB-C cable 2m", "Desk lamp", "Notebook A5", "Water bottle"],
                 "de": ["Kaffeebohnen 1kg", "USB-C-Kabel 2m", "Schreibtischlampe", "Notizbuch A5", "Trinkflasche"],
                 "fr": ["Café en grains 1kg", "Câble USB-C 2m", "Lampe de bureau", "Carnet A5", "Gourde"],
                 "es": ["Café en grano 1kg", "Cable USB-C 2m", "Lámpara de escritorio", "Cuaderno A5", "Botella"],
                 "nl": ["Koffiebonen 1kg", "USB-C-kabel 2m", "Bureaulamp", "Notitieboek A5", "Drinkfles"],
                 "it": ["Caffè in grani 1kg", "Cavo USB-C 2m", "Lampada da scrivania", "Quaderno A5", "Borraccia"],
                 "pl": ["Kawa ziarnista 1kg", "Kabel USB-C 2m", "Lampka biurkowa", "Notes A5", "Bidon"],
                 "pt": ["Café em grãos 1kg", "Cabo USB-C 2m", "Luminária de mesa", "Caderno A5", "Garrafa"]})
    for i in range(c.rng.randint(5, 9)):
        price = fmt_amount(c.loc, c.rng.uniform(3, 90), sym=False)
        if sep == ",":
            price = price.replace(",", "")
        c.w(sep.join([f"SKU-{c.rng.randint(1000, 9999)}", c.rng.choice(items), "⟦ean⟧", "⟦upc⟧" if c.rng.random() < 0.5 else "", price, "⟦date⟧"]) + "\n")
    return "product_catalog.csv"


@template(G6, None, clean=True)
def g6_clean_devices(c):
    c.t("asset_tag,model,imei,ip,os_version,last_seen\n")
    for i in range(c.rng.randint(5, 9)):
        c.w(f"IT-{c.rng.randint(10000, 99999)},{c.rng.choice(['iPhone 13', 'Galaxy A54', 'Pixel 7a', 'iPad Air'])},⟦imei⟧,⟦ip:priv⟧,⟦ver:mobile⟧,⟦ts:isoz⟧\n")
    return "mdm_devices.csv"


@template(G6, None, clean=True)
def g6_clean_funds(c):
    sep = csv_sep(c)
    c.t(sep.join(c.L({"en": ["isin", "fund", "nav", "date", "order_ref"], "de": ["ISIN", "Fonds", "Anteilspreis", "Datum", "Auftragsnr"],
                       "fr": ["ISIN", "Fonds", "VL", "Date", "N_ordre"], "es": ["ISIN", "Fondo", "Valor liquidativo", "Fecha", "N_orden"],
                       "nl": ["ISIN", "Fonds", "Koers", "Datum", "Ordernr"], "it": ["ISIN", "Fondo", "NAV", "Data", "N_ordine"],
                       "pl": ["ISIN", "Fundusz", "Wycena", "Data", "Nr_zlecenia"], "pt": ["ISIN", "Fundo", "Cota", "Data", "N_ordem"]})) + "\n")
    for i in range(c.rng.randint(4, 8)):
        nav = fmt_amount(c.loc, c.rng.uniform(10, 300), sym=False)
        if sep == ",":
            nav = nav.replace(",", "")
        c.w(sep.join(["⟦isin⟧", c.rng.choice(["World Equity", "Euro Bond", "Global Tech", "Emerging Markets", "Dividend Select"]) + " " +
                      c.rng.choice(["A", "B", "I", "Acc", "Dist"]), nav, "⟦date⟧", "⟦order_luhn:12⟧"]) + "\n")
    return "fund_prices.csv"


# ---------------------------------------------------------------------------
# genre 7: contracts and letters
# ---------------------------------------------------------------------------
G7 = "contract_letter"


@template(G7, ["en-US"], weight=1.0)
def g7_us_verification(c):
    c.w("⟦company⟧\n⟦addr2#co⟧\n\n⟦date_long⟧\n\nTo Whom It May Concern:\n\nRE: Employment Verification – ⟦name#p1⟧\n\n"
        "This letter confirms that ⟦name#p1⟧ (SSN ⟦ssn#s1⟧) has been employed by ⟦company⟧ as a "
        + c.pick("Senior Accountant", "Warehouse Supervisor", "Registered Nurse", "Software Engineer", "Account Manager")
        + " since ⟦date:-1400⟧. " + c.pick("Their", "Her", "His") + " current annual base salary is "
        + fmt_amount(c.loc, c.rng.randint(42, 160) * 1000.0) + ".\n\n"
        "This information is provided at the employee's request in connection with a "
        + c.pick("mortgage application", "rental application", "auto loan") + " (their reference ⟦claim⟧). "
        "Please direct any questions to our HR department at ⟦phone#hr⟧ or ⟦email_role:hr⟧. Our Federal EIN is ⟦ein⟧.\n\n"
        "Sincerely,\n\n⟦name#p2⟧\nHR Generalist\n⟦email_work#p2⟧ | ⟦phone#p2⟧\n")
    return "employment_verification_" + translit(c.v("last#p1")) + ".txt"


WIFI = {
    "en": "Broadband: the router is already installed. Network \"{ssid}\", Wi-Fi password: ",
    "de": "Internet: Der Router ist bereits eingerichtet. WLAN \"{ssid}\", Passwort: ",
    "fr": "Internet : la box est déjà installée. Réseau « {ssid} », clé Wi-Fi : ",
    "es": "Internet: el router ya está instalado. Red «{ssid}», contraseña del wifi: ",
    "nl": "Internet: de router is al geïnstalleerd. Netwerk \"{ssid}\", wifi-wachtwoord: ",
    "it": "Internet: il router è già installato. Rete «{ssid}», password Wi-Fi: ",
    "pl": "Internet: router jest już skonfigurowany. Sieć „{ssid}”, hasło do Wi-Fi: ",
    "pt": "Internet: o roteador já está instalado. Rede \"{ssid}\", senha do Wi-Fi: ",
}


def wifi_clause(c):
    if c.rng.random() < 0.6:
        ssid = c.pick("FRITZ!Box 7590 " + rs(c.rng, UP, 2), "Vodafone-" + rs(c.rng, UP + DIG, 4), "Livebox-" + rs(c.rng, UP + DIG, 4),
                      "MOVISTAR_" + rs(c.rng, UP + DIG, 4), "Ziggo" + rdig(c.rng, 7), "TIM-" + rdig(c.rng, 8), "UPC" + rdig(c.rng, 7),
                      "Wohnung-" + rdig(c.rng, 2), "HomeNet-" + rs(c.rng, UP, 3))
        c.w("\n" + c.L(WIFI).replace("{ssid}", ssid) + ("⟦phrase⟧" if c.rng.random() < 0.6 else "⟦pw_human⟧") + "\n")


@template(G7, ["en-US"], weight=1.0)
def g7_us_lease(c):
    c.use_org("landlord")
    c.w("RESIDENTIAL LEASE AGREEMENT\n\nThis Lease is entered into on ⟦date_long⟧ between ⟦company⟧ (\"Landlord\") and the Tenant(s) listed below.\n\n"
        "1. PREMISES. ⟦addr#p1⟧.\n2. TERM. Twelve (12) months beginning ⟦date:14⟧.\n3. RENT. "
        + fmt_amount(c.loc, c.rng.randint(11, 38) * 100.0) + " per month, due on the first day of each month.\n"
        "4. SECURITY DEPOSIT. One month's rent, held in account at Summit Ridge Credit Union.\n\n"
        "TENANT INFORMATION\nTenant 1: ⟦name#p1⟧    SSN: ⟦ssn#s1⟧    DOB: ⟦date:-11000⟧\n   Phone: ⟦phone#p1⟧    Email: ⟦email#p1⟧\n")
    if c.rng.random() < 0.85:
        c.w("Tenant 2: ⟦name#p2⟧    SSN: ⟦ssn#s2⟧    DOB: ⟦date:-10500⟧\n   Phone: ⟦phone#p2⟧    Email: ⟦email#p2⟧\n")
    c.w("\nEmergency contact: ⟦name#p3⟧, ⟦phone#p3⟧\n\nLANDLORD NOTICES: ⟦email_role:info⟧ / ⟦phone:land#co⟧\nParcel ID ⟦claim⟧ (County Assessor)\n")
    wifi_clause(c)
    return "lease_agreement.txt"


@template(G7, EN)
def g7_en_complaint(c):
    c.use_org("utility")
    c.w("⟦name#p1⟧\n⟦addr2#p1⟧\n⟦phone#p1⟧\n⟦email#p1⟧\n\n⟦date_long⟧\n\nCustomer Relations\n⟦company⟧\n\n"
        "Dear Sir or Madam,\n\nRe: Account number ⟦acct_luhn⟧ – formal complaint\n\n"
        "I am writing to complain about the handling of my claim (reference ⟦pid#ref⟧). On ⟦date:-30⟧ I reported a fault with my "
        + c.pick("boiler", "broadband connection", "washing machine", "mobile handset (IMEI ⟦imei⟧)") + ". Despite three phone calls "
        "and two e-mails, the issue remains unresolved and I have been charged "
        + fmt_amount(c.loc, c.rng.uniform(40, 300)) + " for a visit that never took place.\n\n"
        "Please refund this amount and confirm in writing within 14 days. If you need to contact me, I am best reached on my mobile "
        "⟦phone:mob#p1m⟧.\n\nYours faithfully,\n\n⟦name#p1⟧\n")
    return "complaint_letter.txt"


@template(G7, EN_NOT_US)
def g7_en_engagement(c):
    c.w("LETTER OF ENGAGEMENT\n\n⟦company⟧\n⟦addr2#co⟧\nTel: ⟦phone:land#co⟧ | ⟦email_role:info⟧\n\n⟦date_long⟧\n\n⟦name#p1⟧\n⟦addr2#p1⟧\n\n"
        "Dear ⟦first#p1⟧,\n\nThank you for instructing us. This letter sets out the terms on which we will act for you.\n\n"
        "Fees: Our fixed fee is " + fmt_amount(c.loc, c.rng.randint(5, 40) * 100.0) + " plus applicable tax, payable within 14 days of invoice.\n"
        "Payment: by bank transfer to account name ⟦company⟧, IBAN ⟦iban:home#own⟧, quoting reference ⟦pid#ref⟧.\n"
        "Fraud warning: we will never change our bank details by e-mail. If you receive such an e-mail, call us on ⟦phone:land#co⟧ before paying.\n\n"
        "Your matter will be handled by ⟦name#p2⟧ (⟦email_work#p2⟧, direct line ⟦phone#p2⟧).\n\n"
        "Please sign and return a copy of this letter.\n\nYours sincerely,\n\n⟦name#p2⟧\nfor and on behalf of ⟦company⟧\n")
    return "engagement_letter.txt"


@template(G7, ["de-DE"])
def g7_de_mietvertrag(c):
    c.use_org("landlord")
    c.w("Mietvertrag über Wohnraum (Auszug)\n\nZwischen\n⟦company⟧, ⟦addr#co⟧, Tel. ⟦phone:land#co⟧, E-Mail ⟦email_role:info⟧\n– Vermieter –\n\n"
        "und\n⟦name#p1⟧, geb. am ⟦date:-11000⟧, Tel. ⟦phone:mob#p1⟧, E-Mail ⟦email#p1⟧\n– Mieter –\n\n"
        "§ 1 Mietsache\nVermietet wird die Wohnung ⟦addr#p1⟧, 2. OG links.\n\n§ 3 Miete und Nebenkosten\nDie Grundmiete beträgt monatlich "
        + fmt_amount(c.loc, c.rng.randint(6, 18) * 100.0) + ", die Vorauszahlung für Betriebskosten " + fmt_amount(c.loc, c.rng.randint(12, 30) * 10.0) + ".\n"
        "Die Miete ist bis zum dritten Werktag eines Monats auf folgendes Konto zu zahlen:\nIBAN ⟦iban:home#own⟧ · BIC " + c.bic("DE") + "\n\n"
        "§ 5 Mietsicherheit\nDer Mieter leistet eine Kaution in Höhe von drei Nettokaltmieten. Die Rückzahlung erfolgt auf das Konto des Mieters:\n"
        "IBAN ⟦iban#p1⟧\n\nSEPA-Lastschriftmandat: Gläubiger-Identifikationsnummer ⟦cred_id⟧, Mandatsreferenz ⟦num:8⟧.\n\n"
        "⟦city#co⟧, den ⟦date⟧\n\n____________________          ____________________\nVermieter                      Mieter\n")
    wifi_clause(c)
    return "Mietvertrag_" + c.v("last#p1").replace(" ", "_") + ".txt"


@template(G7, ["fr-FR"])
def g7_fr_bail(c):
    c.use_org("landlord")
    c.w("CONTRAT DE LOCATION – LOGEMENT NU (extrait)\n\nENTRE LES SOUSSIGNÉS :\n⟦company⟧, ⟦addr#co⟧, tél. ⟦phone:land#co⟧, ⟦email_role:info⟧, "
        "SIREN ⟦siren⟧,\nci-après « le Bailleur »,\n\nET :\n⟦name#p1⟧, né(e) le ⟦date:-10000⟧, tél. ⟦phone:mob#p1⟧, courriel ⟦email#p1⟧,\n"
        "ci-après « le Locataire ».\n\nArticle 3 – Loyer\nLe loyer mensuel est fixé à " + fmt_amount(c.loc, c.rng.randint(5, 16) * 100.0)
        + " charges comprises, payable par prélèvement SEPA sur le compte du Locataire :\nIBAN : ⟦iban#p1⟧\n\n"
        "Article 4 – Dépôt de garantie\nLe dépôt de garantie sera restitué par virement sur ce même compte dans un délai d'un mois.\n"
        "Paiement du loyer au Bailleur : IBAN ⟦iban:home#own⟧ – BIC " + c.bic("FR") + "\n\nFait à ⟦city#co⟧, le ⟦date⟧, en deux exemplaires.\n")
    wifi_clause(c)
    return "bail_location.txt"


@template(G7, ["es-ES"])
def g7_es_arrendamiento(c):
    c.use_org("landlord")
    c.w("CONTRATO DE ARRENDAMIENTO DE VIVIENDA\n\nEn ⟦city#co⟧, a ⟦date_long⟧\n\nREUNIDOS\nDe una parte, ⟦company⟧, con domicilio en ⟦addr#co⟧, "
        "teléfono ⟦phone:land#co⟧ y correo ⟦email_role:info⟧ (en adelante, el ARRENDADOR).\nY de otra, D./Dña. ⟦name#p1⟧, con teléfono "
        "⟦phone:mob#p1⟧ y correo electrónico ⟦email#p1⟧ (en adelante, el ARRENDATARIO).\n\nCLÁUSULAS\nTERCERA.– Renta. La renta mensual es de "
        + fmt_amount(c.loc, c.rng.randint(6, 18) * 100.0) + ", que se abonará mediante domiciliación bancaria en la cuenta del ARRENDATARIO "
        "⟦iban#p1⟧.\nCUARTA.– Fianza. El ARRENDATARIO entrega una mensualidad en concepto de fianza, que se ingresará en la cuenta "
        "⟦iban:home#own⟧ del ARRENDADOR.\nQUINTA.– Notificaciones. Cualquier comunicación se dirigirá a las direcciones de correo arriba indicadas.\n")
    wifi_clause(c)
    return "contrato_arrendamiento.txt"


@template(G7, ["nl-NL"])
def g7_nl_huur(c):
    c.use_org("landlord")
    c.w("HUUROVEREENKOMST WOONRUIMTE\n\nDe ondergetekenden:\n⟦company⟧, gevestigd te ⟦city#co⟧, tel. ⟦phone:land#co⟧, e-mail ⟦email_role:info⟧, "
        "hierna te noemen 'verhuurder',\nen\n⟦name#p1⟧, geboren op ⟦date:-9500⟧, tel. ⟦phone:mob#p1⟧, e-mail ⟦email#p1⟧, hierna te noemen 'huurder',\n\n"
        "verklaren te zijn overeengekomen:\n\nArtikel 4 – Huurprijs\n4.1 De huurprijs bedraagt " + fmt_amount(c.loc, c.rng.randint(8, 20) * 100.0)
        + " per maand.\n4.2 Huurder machtigt verhuurder het bedrag maandelijks af te schrijven van rekening ⟦iban#p1⟧.\n\n"
        "Artikel 5 – Waarborgsom\nDe waarborgsom wordt overgemaakt naar ⟦iban:home#own⟧ t.n.v. ⟦company⟧ o.v.v. ⟦pid#ref⟧.\n\n"
        "Aldus opgemaakt en getekend te ⟦city#co⟧ op ⟦date⟧.\n")
    wifi_clause(c)
    return "huurovereenkomst.txt"


@template(G7, ["it-IT"])
def g7_it_locazione(c):
    c.use_org("landlord")
    c.w("CONTRATTO DI LOCAZIONE AD USO ABITATIVO\n(ai sensi della L. 431/1998)\n\nIl/La sottoscritto/a ⟦company⟧, con sede in ⟦addr#co⟧, tel. "
        "⟦phone:land#co⟧, PEC ⟦email_role:info⟧ (di seguito «locatore»)\n\nconcede in locazione a\n\n⟦name#p1⟧, nato/a il ⟦date:-12000⟧, "
        "cell. ⟦phone:mob#p1⟧, e-mail ⟦email#p1⟧ (di seguito «conduttore»)\n\nl'unità immobiliare sita in ⟦addr#p1⟧.\n\n"
        "Art. 3 – Canone\nIl canone annuo è convenuto in " + fmt_amount(c.loc, c.rng.randint(60, 200) * 100.0) + ", da corrispondersi in rate mensili "
        "mediante bonifico sul conto IBAN ⟦iban:home#own⟧ intestato al locatore.\n\nArt. 4 – Deposito cauzionale\nLa restituzione avverrà sul conto del "
        "conduttore IBAN ⟦iban#p1⟧.\n\nLetto, approvato e sottoscritto. ⟦city#co⟧, ⟦date⟧\n")
    wifi_clause(c)
    return "contratto_locazione.txt"


@template(G7, ["pl-PL"])
def g7_pl_umowa(c):
    c.use_org("landlord")
    c.w("UMOWA NAJMU LOKALU MIESZKALNEGO\n\nzawarta w dniu ⟦date⟧ w miejscowości ⟦city#co⟧ pomiędzy:\n⟦company⟧, ⟦addr#co⟧, REGON ⟦regon⟧, tel. ⟦phone:land#co⟧, "
        "e-mail ⟦email_role:info⟧, zwanym dalej Wynajmującym,\na\n⟦name#p1⟧, tel. ⟦phone:mob#p1⟧, e-mail ⟦email#p1⟧, zwanym dalej Najemcą.\n\n"
        "§ 4\n1. Czynsz najmu wynosi " + fmt_amount(c.loc, c.rng.randint(15, 45) * 100.0) + " miesięcznie.\n2. Czynsz płatny jest przelewem na rachunek "
        "Wynajmującego nr ⟦iban:home#own⟧ do 10. dnia każdego miesiąca.\n\n§ 5\nKaucja zostanie zwrócona na rachunek Najemcy nr ⟦iban#p1⟧ w terminie "
        "30 dni od dnia zwrotu lokalu.\n")
    wifi_clause(c)
    return "umowa_najmu.txt"


@template(G7, ["pt-BR"])
def g7_br_servicos(c):
    pix = c.pick("⟦email#p2⟧", "⟦phone_e164#pix⟧")
    c.w("CONTRATO DE PRESTAÇÃO DE SERVIÇOS\n\nCONTRATANTE: ⟦name#p1⟧, telefone ⟦phone#p1⟧, e-mail ⟦email#p1⟧, residente na ⟦addr#p1⟧.\n"
        "CONTRATADA: ⟦company⟧, com sede na ⟦addr#co⟧, telefone ⟦phone:land#co⟧, e-mail ⟦email_role:info⟧.\n\n"
        "CLÁUSULA PRIMEIRA – DO OBJETO\nPrestação de serviços de " + c.pick("reforma de cozinha", "contabilidade mensal", "desenvolvimento de site") + ".\n\n"
        "CLÁUSULA SEGUNDA – DO PAGAMENTO\nO valor total de " + fmt_amount(c.loc, c.rng.randint(20, 150) * 100.0) + " será pago via PIX, chave " + pix
        + ", ou por transferência internacional para o IBAN ⟦iban:BR#own⟧.\n\nCLÁUSULA TERCEIRA – DO PRAZO\nOs serviços terão início em ⟦date:10⟧.\n\n"
        "⟦city#co⟧, ⟦date_long⟧.\n")
    return "contrato_prestacao_servicos.txt"


TERMINATION = {
    "de": ("Kündigung meines Vertrags", "Sehr geehrte Damen und Herren,", "hiermit kündige ich meinen Vertrag mit der Kundennummer",
           "fristgerecht zum nächstmöglichen Zeitpunkt. Bitte bestätigen Sie mir die Kündigung schriftlich an",
           "Ein eventuelles Guthaben überweisen Sie bitte auf mein Konto", "Für Rückfragen erreichen Sie mich unter", "Mit freundlichen Grüßen"),
    "fr": ("Résiliation de mon contrat", "Madame, Monsieur,", "Par la présente, je vous informe de la résiliation de mon contrat n°",
           "à compter de la date de réception de ce courrier. Merci de m'adresser une confirmation écrite à",
           "Le remboursement du trop-perçu éventuel est à effectuer sur mon compte", "Vous pouvez me joindre au", "Veuillez agréer, Madame, Monsieur, mes salutations distinguées."),
    "es": ("Baja del contrato", "Estimados señores:", "Por medio de la presente solicito la baja del contrato con número de cliente",
           "con efecto inmediato. Les ruego que me envíen la confirmación a", "El saldo a mi favor, si lo hubiera, deberá ingresarse en la cuenta",
           "Pueden contactarme en el", "Atentamente,"),
    "nl": ("Opzegging overeenkomst", "Geachte heer/mevrouw,", "Hierbij zeg ik mijn abonnement met klantnummer",
           "op tegen de eerst mogelijke datum. Graag ontvang ik een schriftelijke bevestiging op", "Een eventueel tegoed kunt u overmaken naar",
           "Ik ben bereikbaar op", "Met vriendelijke groet,"),
    "it": ("Disdetta contratto", "Spett.le Società,", "con la presente comunico la disdetta del contratto n.",
           "con decorrenza dalla prima data utile. Vi prego di inviarmi conferma scritta all'indirizzo", "Eventuali somme a credito andranno accreditate sull'IBAN",
           "Sono raggiungibile al numero", "Distinti saluti,"),
    "pl": ("Wypowiedzenie umowy", "Szanowni Państwo,", "niniejszym wypowiadam umowę o numerze klienta",
           "z zachowaniem okresu wypowiedzenia. Proszę o potwierdzenie na adres", "Ewentualną nadpłatę proszę zwrócić na rachunek",
           "Kontakt telefoniczny:", "Z poważaniem"),
    "pt": ("Cancelamento de contrato", "Prezados,", "venho por meio desta solicitar o cancelamento do contrato de número",
           "a partir desta data. Solicito confirmação por escrito no e-mail", "Eventual saldo credor deverá ser devolvido para a chave PIX",
           "Meu telefone para contato é", "Atenciosamente,"),
    "en": ("Notice of cancellation", "Dear Sir or Madam,", "I hereby give notice to cancel my contract, account number",
           "with effect from the earliest possible date. Please confirm the cancellation in writing to", "Please refund any credit balance to",
           "I can be reached on", "Yours faithfully,"),
}


@template(G7, ["de-DE", "fr-FR", "es-ES", "nl-NL", "it-IT", "pl-PL", "pt-BR", "en-GB", "en-IN"])
def g7_termination(c):
    c.use_org(c.pick("utility", "insurer"))
    T = c.L(TERMINATION)
    refund = "⟦email#p1⟧" if c.lang == "pt" else ("⟦iban#p1⟧" if c.loc not in ("en-IN",) else "the card on file")
    c.w(f"⟦name#p1⟧\n⟦addr2#p1⟧\n\n⟦company⟧\n⟦addr2#co⟧\n\n⟦city#p1⟧, ⟦date⟧\n\n{T[0]}\n\n{T[1]}\n\n{T[2]} ⟦acct_luhn#k⟧ {T[3]} ⟦email#p1⟧.\n\n"
        f"{T[4]}: {refund}.\n\n{T[5]} ⟦phone#p1⟧.\n\n{T[6]}\n⟦name#p1⟧\n")
    return c.L({"de": "Kuendigung.txt", "fr": "resiliation.txt", "es": "baja_contrato.txt", "nl": "opzegging.txt", "it": "disdetta.txt",
                "pl": "wypowiedzenie.txt", "pt": "cancelamento.txt", "en": "cancellation_letter.txt"})


@template(G7, None, clean=True)
def g7_clean_terms(c):
    T = c.L({"en": ("General Terms and Conditions", "Version", "valid from", "Payment is due within 14 days of the invoice date.",
                    "Card payments are processed by our payment provider; we do not store card numbers.", "Order numbers have the format"),
             "de": ("Allgemeine Geschäftsbedingungen", "Fassung", "gültig ab", "Rechnungen sind innerhalb von 14 Tagen zahlbar.",
                    "Kartenzahlungen wickelt unser Zahlungsdienstleister ab; wir speichern keine Kartennummern.", "Bestellnummern haben das Format"),
             "fr": ("Conditions générales de vente", "Version", "en vigueur à partir du", "Les factures sont payables sous 14 jours.",
                    "Les paiements par carte sont traités par notre prestataire ; nous ne conservons aucun numéro de carte.", "Les numéros de commande ont le format"),
             "es": ("Condiciones generales", "Versión", "vigente desde", "Las facturas se pagan en un plazo de 14 días.",
                    "Los pagos con tarjeta los procesa nuestro proveedor; no guardamos números de tarjeta.", "Los números de pedido tienen el formato"),
             "nl": ("Algemene voorwaarden", "Versie", "geldig vanaf", "Facturen dienen binnen 14 dagen te worden voldaan.",
                    "Kaartbetalingen worden verwerkt door onze betaalprovider; wij slaan geen kaartnummers op.", "Ordernummers hebben het formaat"),
             "it": ("Condizioni generali di vendita", "Versione", "in vigore dal", "Le fatture sono pagabili entro 14 giorni.",
                    "I pagamenti con carta sono gestiti dal nostro fornitore; non conserviamo i numeri di carta.", "I numeri d'ordine hanno il formato"),
             "pl": ("Ogólne warunki sprzedaży", "Wersja", "obowiązuje od", "Faktury płatne są w terminie 14 dni.",
                    "Płatności kartą obsługuje nasz operator; nie przechowujemy numerów kart.", "Numery zamówień mają format"),
             "pt": ("Termos e condições gerais", "Versão", "válida a partir de", "As faturas vencem em 14 dias.",
                    "Pagamentos com cartão são processados pelo nosso provedor; não armazenamos números de cartão.", "Os números de pedido têm o formato")})
    c.w(f"{T[0]}\n{T[1]} ⟦ver:semver⟧ – {T[2]} ⟦date⟧\n\n§ 1\n{T[3]}\n\n§ 2\n{T[4]}\n\n§ 3\n{T[5]} ⟦order_luhn⟧ / ⟦pid⟧.\n")
    return "terms.txt"


# ---------------------------------------------------------------------------
# genre 8: invoices and receipts
# ---------------------------------------------------------------------------
G8 = "invoice_receipt"

INV = {
    "en": dict(title="INVOICE", no="Invoice no.", date="Invoice date", due="Due date", cust="Customer no.", item="Description", qty="Qty",
               price="Unit price", total="Total", vat="VAT", bank="Bank details", tel="Tel", mail="Email", thanks="Thank you for your business.",
               pay="Please pay by bank transfer quoting the invoice number.", vatid="VAT reg. no."),
    "de": dict(title="RECHNUNG", no="Rechnungsnr.", date="Rechnungsdatum", due="Fällig am", cust="Kundennr.", item="Bezeichnung", qty="Menge",
               price="Einzelpreis", total="Gesamtbetrag", vat="zzgl. 19 % USt.", bank="Bankverbindung", tel="Tel.", mail="E-Mail",
               thanks="Vielen Dank für Ihren Auftrag!", pay="Bitte überweisen Sie den Betrag unter Angabe der Rechnungsnummer.", vatid="USt-IdNr."),
    "fr": dict(title="FACTURE", no="Facture n°", date="Date", due="Échéance", cust="Client n°", item="Désignation", qty="Qté",
               price="PU HT", total="Total TTC", vat="TVA 20 %", bank="Coordonnées bancaires", tel="Tél.", mail="Courriel",
               thanks="Merci de votre confiance.", pay="Règlement par virement en rappelant le numéro de facture.", vatid="N° TVA intracom."),
    "es": dict(title="FACTURA", no="Nº factura", date="Fecha", due="Vencimiento", cust="Nº cliente", item="Concepto", qty="Uds.",
               price="Precio", total="Total", vat="IVA 21 %", bank="Datos bancarios", tel="Tel.", mail="Email",
               thanks="Gracias por su confianza.", pay="Forma de pago: transferencia bancaria indicando el número de factura.", vatid="CIF"),
    "nl": dict(title="FACTUUR", no="Factuurnummer", date="Factuurdatum", due="Vervaldatum", cust="Klantnummer", item="Omschrijving", qty="Aantal",
               price="Prijs", total="Totaal", vat="Btw 21%", bank="Bankgegevens", tel="Tel.", mail="E-mail",
               thanks="Bedankt voor uw opdracht.", pay="Gelieve het bedrag binnen 14 dagen over te maken o.v.v. het factuurnummer.", vatid="Btw-nr."),
    "it": dict(title="FATTURA", no="Fattura n.", date="Data", due="Scadenza", cust="Cod. cliente", item="Descrizione", qty="Q.tà",
               price="Prezzo unit.", total="Totale", vat="IVA 22%", bank="Coordinate bancarie", tel="Tel.", mail="E-mail",
               thanks="Grazie per averci scelto.", pay="Pagamento tramite bonifico bancario indicando il numero della fattura.", vatid="P. IVA"),
    "pl": dict(title="FAKTURA VAT", no="Nr faktury", date="Data wystawienia", due="Termin płatności", cust="Nr klienta", item="Nazwa towaru/usługi",
               price="Cena netto", qty="Ilość", total="Razem brutto", vat="VAT 23%", bank="Rachunek bankowy", tel="Tel.", mail="E-mail",
               thanks="Dziękujemy za zakupy.", pay="Płatność przelewem na rachunek podany poniżej.", vatid="NIP"),
    "pt": dict(title="FATURA", no="Fatura nº", date="Emissão", due="Vencimento", cust="Cód. cliente", item="Descrição", qty="Qtd.",
               price="Valor unit.", total="Total", vat="Impostos", bank="Dados para pagamento", tel="Tel.", mail="E-mail",
               thanks="Obrigado pela preferência.", pay="Pagamento via PIX ou boleto.", vatid="CNPJ"),
}
ITEMS = {
    "en": ["Consulting services", "Annual support plan", "Replacement filter", "Installation labour (hrs)", "Monitor 27\"", "Cloud hosting – monthly"],
    "de": ["Beratungsleistung", "Wartungsvertrag (jährlich)", "Ersatzfilter", "Montage (Std.)", "Monitor 27 Zoll", "Webhosting – monatlich"],
    "fr": ["Prestation de conseil", "Contrat de maintenance annuel", "Filtre de rechange", "Main-d'œuvre (h)", "Écran 27 pouces", "Hébergement mensuel"],
    "es": ["Servicios de consultoría", "Mantenimiento anual", "Filtro de recambio", "Mano de obra (h)", "Monitor 27\"", "Alojamiento web mensual"],
    "nl": ["Advieswerkzaamheden", "Onderhoudscontract (jaar)", "Vervangend filter", "Arbeidsloon (uur)", "Monitor 27 inch", "Hosting – maandelijks"],
    "it": ["Consulenza", "Contratto di assistenza annuale", "Filtro di ricambio", "Manodopera (ore)", "Monitor 27\"", "Hosting mensile"],
    "pl": ["Usługa doradcza", "Abonament serwisowy (rok)", "Filtr zamienny", "Robocizna (godz.)", "Monitor 27\"", "Hosting – miesięcznie"],
    "pt": ["Consultoria", "Plano anual de suporte", "Filtro de reposição", "Mão de obra (h)", "Monitor 27\"", "Hospedagem mensal"],
}


@template(G8, None, weight=2.5)
def g8_invoice(c):
    I = c.L(INV)
    loc = c.loc
    c.w(f"⟦company⟧\n⟦addr2#co⟧\n{I['tel']} ⟦phone:land#co⟧ · {I['mail']} ⟦email_role:billing⟧\n")
    if loc == "de-DE":
        c.w(f"{I['vatid']} ⟦vatde⟧\n")
    elif loc == "fr-FR":
        c.w("SIREN ⟦siren⟧\n")
    elif loc == "pl-PL":
        c.w("REGON ⟦regon⟧\n")
    elif loc == "en-AU":
        c.w("ACN ⟦acn⟧\n")
    elif loc == "en-US":
        c.w("EIN ⟦ein⟧\n")
    c.w(f"\n{I['title']}\n\n⟦name#p1⟧\n⟦addr2#p1⟧\n\n{I['no']}: ⟦inv:" + c.pick("RE", "INV", "F", "FV") + f"⟧\n{I['date']}: ⟦date⟧\n{I['due']}: ⟦date:14⟧\n"
        f"{I['cust']}: ⟦acct_luhn#cust⟧\n\n{I['item']:<36}{I['qty']:>6}{I['price']:>14}\n")
    items = c.L(ITEMS)
    tot = 0.0
    for _ in range(c.rng.randint(1, 4)):
        q = c.rng.randint(1, 5)
        p = c.rng.uniform(8, 450)
        tot += q * p
        name = c.rng.choice(items)
        if c.rng.random() < 0.4:
            c.w(f"{name[:24]:<24} EAN ⟦ean⟧")
            c.w(f"{q:>6}{fmt_amount(loc, p):>14}\n")
        else:
            c.w(f"{name:<36}{q:>6}{fmt_amount(loc, p):>14}\n")
    vat = {"en-US": "incl. sales tax", "en-IN": "incl. GST 18%", "en-AU": "incl. GST", "en-GB": "incl. VAT 20%"}.get(loc, I["vat"])
    pay = "Payment due within 30 days." if loc == "en-US" else I["pay"]
    c.w(f"\n{I['total']}: {fmt_amount(loc, tot * 1.19)} ({vat})\n\n{pay}\n")
    if loc in ("en-US",):
        c.w("Pay online at https://pay.⟦domain⟧/i/⟦stripe_id:in⟧ or mail a check. ACH: routing ⟦routing⟧. Questions: ⟦email_role:billing⟧\n")
    elif loc == "en-IN":
        c.w("UPI: ⟦upi⟧ · Foreign remittance: IBAN ⟦iban:home#own⟧\n")
    elif loc == "pt-BR":
        c.w("Chave PIX: ⟦email_role:billing⟧ · Boleto: ⟦num:5⟧.⟦num:5⟧ ⟦num:5⟧.⟦num:6⟧\n")
    else:
        c.w(f"{I['bank']}: ⟦company⟧ · IBAN ⟦iban:home#own⟧ · BIC {c.bic()}\n")
    c.w(f"\n{I['thanks']}\n")
    return c.pick("invoice", "rechnung" if c.lang == "de" else "facture" if c.lang == "fr" else "factura" if c.lang == "es" else "invoice") \
        + "_" + rdig(c.rng, 5) + ".txt"


@template(G8, EN)
def g8_card_auth_form(c):
    c.w("⟦company⟧ – CREDIT CARD AUTHORIZATION FORM\n\nI, ⟦name#p1⟧, authorize ⟦company⟧ to charge the card below for "
        + c.pick("the deposit and any remaining balance", "recurring monthly fees", "the booking dated ⟦date:30⟧") + ".\n\n"
        "Card type:  [" + c.pick("x] Visa  [ ] MC  [ ] Amex", " ] Visa  [x] MC  [ ] Amex") + "\n"
        "Cardholder name:  ⟦name#p1⟧\nCard number:  ⟦card#k1⟧\nExpiration:  " + c.exp() + "    CVV: " + rdig(c.rng, 3) + "\n"
        "Billing address:  ⟦addr#p1⟧\nPhone:  ⟦phone#p1⟧\nEmail:  ⟦email#p1⟧\n\nAmount: " + fmt_amount(c.loc, c.rng.uniform(100, 2500))
        + "    Date: ⟦date⟧\n\nSignature: ____________________\n\nReturn completed form to ⟦email_role:billing⟧ or fax ⟦phone:land#fax⟧.\n")
    return "cc_authorization_form.txt"


@template(G8, ["en-US"], weight=1.2)
def g8_us_medical_bill(c):
    c.use_org("clinic")
    c.w("⟦company⟧\nPATIENT STATEMENT\n\nStatement date: ⟦date⟧        Account #: ⟦acct_luhn#acc⟧\n\nGuarantor: ⟦name#p1⟧\n⟦addr2#p1⟧\n"
        "Guarantor SSN: ⟦ssn#g⟧      Phone: ⟦phone#p1⟧\nPatient: ⟦first#p2⟧ ⟦last#p1⟧     DOB: ⟦date:-4000⟧\n"
        "Insurance: ⟦choice:Aetna|BlueCross BlueShield|UnitedHealthcare|Cigna⟧  Member ID ⟦num9⟧  Group ⟦claim⟧\n\n"
        "Date of service  Description                          Charges    Ins. paid\n"
        "⟦date:-40⟧       Office visit, est. patient           $245.00    $180.00\n"
        "⟦date:-40⟧       Lab – comprehensive panel            $118.00     $94.40\n\n"
        "PATIENT BALANCE DUE: $88.60\n\nPay online at https://pay.⟦domain⟧ or call ⟦phone:land#bill⟧. Billing questions: ⟦email_role:billing⟧\n")
    return "patient_statement.txt"


RECEIPT = {
    "en": ("RECEIPT", "Subtotal", "TOTAL", "Card", "Auth code", "Terminal", "Thank you for shopping with us!"),
    "de": ("KASSENBON", "Zwischensumme", "SUMME", "Karte", "Genehmigungs-Nr.", "Terminal-ID", "Vielen Dank für Ihren Einkauf!"),
    "fr": ("TICKET DE CAISSE", "Sous-total", "TOTAL", "Carte", "N° autorisation", "Terminal", "Merci de votre visite !"),
    "es": ("TIQUE DE COMPRA", "Subtotal", "TOTAL", "Tarjeta", "Cód. autorización", "Terminal", "¡Gracias por su compra!"),
    "nl": ("KASSABON", "Subtotaal", "TOTAAL", "Pinpas", "Autorisatiecode", "Terminal", "Bedankt voor uw bezoek!"),
    "it": ("SCONTRINO", "Subtotale", "TOTALE", "Carta", "Cod. autorizzazione", "Terminale", "Grazie e arrivederci!"),
    "pl": ("PARAGON FISKALNY", "Suma częściowa", "RAZEM", "Karta", "Kod autoryzacji", "Terminal", "Dziękujemy za zakupy!"),
    "pt": ("CUPOM FISCAL", "Subtotal", "TOTAL", "Cartão", "Cód. autorização", "Terminal", "Obrigado pela preferência!"),
}


def _receipt(c, with_contact):
    R = c.L(RECEIPT)
    c.w(f"⟦company⟧\n⟦addr2#co⟧\n")
    if with_contact:
        c.w("⟦phone:land#co⟧\n")
    c.w(f"\n{R[0]}\n⟦date⟧ ⟦time⟧\n\n")
    tot = 0.0
    for _ in range(c.rng.randint(2, 6)):
        p = c.rng.uniform(0.5, 40)
        tot += p
        c.w(("⟦upc⟧" if c.loc == "en-US" else "⟦ean⟧") + f"  {fmt_amount(c.loc, p):>12}\n")
    c.w(f"\n{R[1]}: {fmt_amount(c.loc, tot)}\n{R[2]}: {fmt_amount(c.loc, tot)}\n\n{R[3]}: ⟦mask_card⟧\n{R[4]}: {rdig(c.rng, 6)}\n{R[5]}: {rdig(c.rng, 8)}\n\n{R[6]}\n")


@template(G8, None, weight=0.8)
def g8_receipt_contact(c):
    c.use_org("shop")
    _receipt(c, True)
    if c.rng.random() < 0.7:
        c.w("Online: www.⟦domain⟧ · ⟦email_role:info⟧\n")
    return "receipt_" + rdig(c.rng, 6) + ".txt"


@template(G8, None, clean=True)
def g8_clean_receipt(c):
    c.use_org("shop")
    _receipt(c, False)
    return "receipt_" + rdig(c.rng, 6) + ".txt"


@template(G8, EN, clean=True)
def g8_clean_packing(c):
    c.use_org("shop")
    c.w("PACKING SLIP\nOrder ⟦order_luhn⟧    Ship date ⟦date⟧\nCarrier tracking: ⟦tracking⟧\n\n")
    for _ in range(c.rng.randint(2, 5)):
        c.w(f"UPC ⟦upc⟧   qty {c.rng.randint(1, 4)}\n")
    c.w("\nReturns: use RMA ⟦pid⟧ within 30 days.\n")
    return "packing_slip.txt"


# ---------------------------------------------------------------------------
# genre 9: HTML pages
# ---------------------------------------------------------------------------
G9 = "html_page"

HTMLL = {
    "contact": {"en": "Contact us", "de": "Kontakt", "fr": "Contactez-nous", "es": "Contacto", "nl": "Contact", "it": "Contatti", "pl": "Kontakt", "pt": "Fale conosco"},
    "team": {"en": "Your contacts", "de": "Ihre Ansprechpartner", "fr": "Vos interlocuteurs", "es": "Sus contactos", "nl": "Uw contactpersonen",
             "it": "I vostri referenti", "pl": "Osoby kontaktowe", "pt": "Seus contatos"},
    "hours": {"en": "Mon–Fri 9am–5pm", "de": "Mo–Fr 9–17 Uhr", "fr": "du lundi au vendredi, 9h–18h", "es": "L–V de 9:00 a 18:00",
              "nl": "ma–vr 9.00–17.00 uur", "it": "lun–ven 9:00–18:00", "pl": "pon.–pt. 9:00–17:00", "pt": "seg. a sex., 9h às 18h"},
    "order": {"en": "Thank you for your order", "de": "Vielen Dank für Ihre Bestellung", "fr": "Merci pour votre commande",
              "es": "Gracias por tu pedido", "nl": "Bedankt voor je bestelling", "it": "Grazie per il tuo ordine", "pl": "Dziękujemy za zamówienie",
              "pt": "Obrigado pelo seu pedido"},
    "paid": {"en": "Paid with", "de": "Bezahlt mit", "fr": "Payé avec", "es": "Pagado con", "nl": "Betaald met", "it": "Pagato con",
             "pl": "Zapłacono kartą", "pt": "Pago com"},
    "ship": {"en": "Shipping to", "de": "Lieferadresse", "fr": "Livraison à", "es": "Envío a", "nl": "Bezorgadres", "it": "Spedizione a",
             "pl": "Adres dostawy", "pt": "Entrega em"},
    "settings": {"en": "Account settings", "de": "Kontoeinstellungen", "fr": "Paramètres du compte", "es": "Ajustes de la cuenta",
                 "nl": "Accountinstellingen", "it": "Impostazioni account", "pl": "Ustawienia konta", "pt": "Configurações da conta"},
    "save": {"en": "Save", "de": "Speichern", "fr": "Enregistrer", "es": "Guardar", "nl": "Opslaan", "it": "Salva", "pl": "Zapisz", "pt": "Salvar"},
}


def hl(c, k):
    return c.L(HTMLL[k])


@template(G9, None, weight=2.0)
def g9_contact_page(c):
    lang = c.lang
    c.w(f"<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n  <meta charset=\"utf-8\">\n  <title>{hl(c, 'contact')} – ⟦company⟧</title>\n"
        "  <meta name=\"generator\" content=\"WordPress ⟦ver:wp⟧\">\n</head>\n<body>\n<main>\n"
        f"  <h1>{hl(c, 'contact')}</h1>\n  <p>⟦addr#co⟧<br>\n    <a href=\"tel:⟦phone_e164#main⟧\">⟦phone_local#main⟧</a> ({hl(c, 'hours')})<br>\n"
        "    <a href=\"mailto:⟦email_role:info#co⟧\">⟦email_role:info#co⟧</a></p>\n"
        f"  <h2>{hl(c, 'team')}</h2>\n  <ul class=\"team\">\n")
    for i in range(c.rng.randint(2, 4)):
        c.w(f"    <li><strong>⟦name#t{i}⟧</strong> – <a href=\"mailto:⟦email_work#t{i}⟧\">⟦email_work#t{i}⟧</a>, "
            f"<a href=\"tel:⟦phone_e164#t{i}⟧\">⟦phone_local#t{i}⟧</a></li>\n")
    if c.rng.random() < 0.5:
        c.w("    <li><strong>⟦name#tx⟧</strong> – ⟦email_obf#tx⟧</li>\n")
    c.w("  </ul>\n")
    if c.rng.random() < 0.4:
        c.w("  <p>" + c.L({"en": "International customers", "de": "Kunden aus dem Ausland", "fr": "Clients à l'étranger", "es": "Clientes internacionales",
                           "nl": "Internationale klanten", "it": "Clienti dall'estero", "pl": "Klienci zagraniczni", "pt": "Clientes internacionais"})
            + ": ⟦phone_intl#main⟧ · " + c.L({"en": "Partner office", "de": "Partnerbüro", "fr": "Bureau partenaire", "es": "Oficina asociada",
                                              "nl": "Partnerkantoor", "it": "Ufficio partner", "pl": "Biuro partnerskie", "pt": "Escritório parceiro"})
            + ": ⟦phone_foreign:land#uk⟧</p>\n")
    if c.loc == "de-DE":
        c.w("  <section id=\"impressum\">\n    <h2>Impressum</h2>\n    <p>⟦company⟧ · Geschäftsführer: ⟦name#gf⟧<br>\n"
            "    Registergericht: Amtsgericht ⟦city#co⟧, HRB ⟦num:5⟧<br>\n    Umsatzsteuer-ID: ⟦vatde⟧<br>\n"
            "    Telefon: ⟦phone#main⟧ · E-Mail: ⟦email_role:info#co⟧</p>\n  </section>\n")
    c.w("</main>\n<footer>© ⟦company⟧ · <a href=\"/privacy\">Privacy</a></footer>\n</body>\n</html>\n")
    return c.L({"de": "kontakt.html", "fr": "contact.html", "es": "contacto.html", "it": "contatti.html", "pl": "kontakt.html",
                "pt": "fale-conosco.html", "nl": "contact.html", "en": "contact.html"})


@template(G9, None, weight=1.5)
def g9_order_confirmation(c):
    c.use_org("shop")
    full = c.rng.random() < 0.45
    c.w(f"<html><body style=\"font-family:Arial,sans-serif\">\n<table width=\"600\" align=\"center\">\n<tr><td><h2>{hl(c, 'order')}, ⟦first#p1⟧!</h2></td></tr>\n"
        "<tr><td>" + c.L({"en": "Order", "de": "Bestellung", "fr": "Commande", "es": "Pedido", "nl": "Bestelling", "it": "Ordine",
                          "pl": "Zamówienie", "pt": "Pedido"}) + " <b>#⟦order_luhn#o⟧</b> · ⟦date⟧</td></tr>\n"
        f"<tr><td><h3>{hl(c, 'ship')}</h3>⟦name#p1⟧<br>⟦addr#p1⟧<br>⟦phone#p1⟧<br>⟦email#p1⟧</td></tr>\n<tr><td>\n"
        "  <table>\n")
    for _ in range(c.rng.randint(1, 3)):
        c.w(f"    <tr><td>EAN ⟦ean⟧</td><td align=\"right\">{fmt_amount(c.loc, c.rng.uniform(5, 150))}</td></tr>\n")
    c.w("  </table>\n</td></tr>\n" + f"<tr><td>{hl(c, 'paid')}: " + ("⟦card#k⟧" if full else "⟦mask_card⟧") + "</td></tr>\n"
        "<tr><td style=\"font-size:11px;color:#888\">⟦company⟧ · <a href=\"mailto:⟦email_role:support⟧\">⟦email_role:support⟧</a> · ⟦phone:land#co⟧<br>\n"
        "<img src=\"https://t.⟦domain⟧/open.gif?u=⟦uuid⟧&amp;e=⟦email#p1⟧\" width=\"1\" height=\"1\"></td></tr>\n</table>\n</body></html>\n")
    return "order_confirmation.html"


@template(G9, None)
def g9_settings_form(c):
    F = c.L({"en": ("Name", "Email", "Phone", "Password"), "de": ("Name", "E-Mail", "Telefon", "Passwort"),
             "fr": ("Nom", "Adresse e-mail", "Téléphone", "Mot de passe"), "es": ("Nombre", "Correo electrónico", "Teléfono", "Contraseña"),
             "nl": ("Naam", "E-mailadres", "Telefoonnummer", "Wachtwoord"), "it": ("Nome", "Indirizzo e-mail", "Telefono", "Password"),
             "pl": ("Imię i nazwisko", "Adres e-mail", "Telefon", "Hasło"), "pt": ("Nome", "E-mail", "Celular", "Senha")})
    has_iban = c.loc not in ("en-US", "en-IN", "en-AU", "pt-BR")
    c.w(f"<form action=\"/account\" method=\"post\" class=\"settings\">\n  <h1>{hl(c, 'settings')}</h1>\n"
        "  <input type=\"hidden\" name=\"csrf_token\" value=\"⟦sha⟧\">\n"
        f"  <label>{F[0]} <input name=\"name\" value=\"⟦name#p1⟧\"></label>\n"
        f"  <label>{F[1]} <input type=\"email\" name=\"email\" value=\"⟦email#p1⟧\"></label>\n"
        f"  <label>{F[2]} <input type=\"tel\" name=\"phone\" value=\"⟦phone#p1⟧\"></label>\n")
    if has_iban:
        c.w("  <label>IBAN <input name=\"iban\" value=\"⟦iban#p1⟧\" autocomplete=\"off\"></label>\n")
    elif c.loc == "en-US":
        c.w("  <label>SSN (for 1099) <input name=\"ssn\" value=\"⟦ssn#s⟧\"></label>\n")
    c.w(f"  <label>{F[3]} <input type=\"password\" name=\"password\" value=\"\" placeholder=\"⟦ph:stars⟧\"></label>\n"
        f"  <button type=\"submit\">{hl(c, 'save')}</button>\n</form>\n<!-- build ⟦sha_short⟧ ⟦ts:isoz⟧ -->\n")
    return "account_settings.html"


@template(G9, None)
def g9_admin_inline_js(c):
    c.w("<!doctype html>\n<html><head><title>Admin – Dashboard</title>\n<script>\n  window.__CONFIG__ = {\n"
        "    apiBase: \"https://api.⟦domain⟧\",\n    stripePublishableKey: \"⟦pk_live⟧\",\n"
        "    mapsKey: \"⟦sec:gcp_api⟧\",\n    adminToken: \"⟦sec:jwt⟧\",\n    release: \"⟦ver:v⟧\",\n"
        "    supportEmail: \"⟦email_role:support⟧\"\n  };\n</script>\n</head>\n<body>\n"
        "<!-- TODO remove before go-live: db user admin / ⟦pw_human⟧ -->\n<div id=\"app\"></div>\n"
        "<script src=\"/static/js/app.⟦sha_short⟧.js\"></script>\n</body></html>\n")
    return "admin/index.html"


@template(G9, None)
def g9_debug_page(c):
    c.w("<!DOCTYPE html><html><head><title>Whoops! There was an error.</title></head><body>\n<h1>Illuminate\\Database\\QueryException</h1>\n"
        "<p>SQLSTATE[HY000] [2002] Connection refused (SQL: select * from `users` where `email` = ⟦email#p1⟧ limit 1)</p>\n"
        "<h2>Environment &amp; details</h2>\n<table class=\"env\">\n"
        "<tr><td>APP_ENV</td><td>production</td></tr>\n<tr><td>APP_KEY</td><td>base64:⟦sec:laravel⟧</td></tr>\n"
        "<tr><td>DB_HOST</td><td>⟦ip:priv⟧</td></tr>\n<tr><td>DB_USERNAME</td><td>forge</td></tr>\n"
        "<tr><td>DB_PASSWORD</td><td>⟦pw#db⟧</td></tr>\n<tr><td>MAIL_USERNAME</td><td>⟦email_role:noreply⟧</td></tr>\n"
        "<tr><td>MAIL_PASSWORD</td><td>⟦ph:stars⟧</td></tr>\n<tr><td>AWS_SECRET_ACCESS_KEY</td><td>⟦sec:aws_secret⟧</td></tr>\n"
        "<tr><td>PUSHER_APP_SECRET</td><td>⟦sec:generic_api⟧</td></tr>\n<tr><td>REMOTE_ADDR</td><td>⟦ip:pub⟧</td></tr>\n"
        "<tr><td>REQUEST_TIME</td><td>⟦ts:epoch⟧</td></tr>\n<tr><td>PHP_VERSION</td><td>⟦ver:php⟧</td></tr>\n</table>\n</body></html>\n")
    return "error_500.html"


@template(G9, ["en-US"], weight=1.2)
def g9_us_application_review(c):
    c.w("<section class=\"review\">\n  <h2>Review your application</h2>\n  <dl>\n    <dt>Applicant</dt><dd>⟦name#p1⟧</dd>\n"
        "    <dt>Social Security Number</dt><dd>⟦ssn#s1⟧</dd>\n    <dt>Date of birth</dt><dd>⟦date:-12000⟧</dd>\n"
        "    <dt>Mobile</dt><dd>⟦phone:mob#p1⟧</dd>\n    <dt>Email</dt><dd>⟦email#p1⟧</dd>\n    <dt>Co-applicant SSN</dt><dd>⟦ssn#s2⟧</dd>\n"
        "    <dt>Employer EIN</dt><dd>⟦ein⟧</dd>\n    <dt>Application ID</dt><dd>⟦num9⟧</dd>\n  </dl>\n"
        "  <p>Questions? Call ⟦phone:land#co⟧ or email <a href=\"mailto:⟦email_role:support⟧\">⟦email_role:support⟧</a>.</p>\n</section>\n")
    return "application_review.html"


DEVDOCS = {
    "en": ("Testing payments", "Use these test card numbers in test mode only. Any future expiry date and any CVC will work.",
           ("Brand", "Number", "Result"), ("Success", "Declined", "Authentication required"),
           "Your secret key goes in", "never hard-code", "in client code.", "Example JWT from the specification:", "Last updated"),
    "de": ("Zahlungen testen", "Diese Testkartennummern funktionieren nur im Testmodus. Jedes zukünftige Ablaufdatum und jede Prüfziffer sind gültig.",
           ("Marke", "Nummer", "Ergebnis"), ("Erfolgreich", "Abgelehnt", "Authentifizierung erforderlich"),
           "Ihr geheimer Schlüssel gehört in", "schreiben Sie niemals", "in den Client-Code.", "Beispiel-JWT aus der Spezifikation:", "Zuletzt aktualisiert"),
    "fr": ("Tester les paiements", "Utilisez ces numéros de carte de test uniquement en mode test. N'importe quelle date d'expiration future et n'importe quel CVC conviennent.",
           ("Réseau", "Numéro", "Résultat"), ("Succès", "Refusé", "Authentification requise"),
           "Votre clé secrète se place dans", "ne codez jamais en dur", "dans le code client.", "Exemple de JWT tiré de la spécification :", "Dernière mise à jour"),
    "es": ("Probar pagos", "Usa estos números de tarjeta de prueba solo en modo de prueba. Sirve cualquier fecha de caducidad futura y cualquier CVC.",
           ("Marca", "Número", "Resultado"), ("Correcto", "Rechazado", "Requiere autenticación"),
           "Tu clave secreta va en", "nunca escribas", "en el código del cliente.", "JWT de ejemplo de la especificación:", "Última actualización"),
    "nl": ("Betalingen testen", "Gebruik deze testkaartnummers alleen in de testmodus. Elke toekomstige vervaldatum en elke CVC werkt.",
           ("Merk", "Nummer", "Resultaat"), ("Geslaagd", "Geweigerd", "Authenticatie vereist"),
           "Je geheime sleutel hoort in", "zet nooit", "hardcoded in clientcode.", "Voorbeeld-JWT uit de specificatie:", "Laatst bijgewerkt"),
    "it": ("Testare i pagamenti", "Usa questi numeri di carta di test solo in modalità test. Qualsiasi data di scadenza futura e qualsiasi CVC sono validi.",
           ("Circuito", "Numero", "Esito"), ("Riuscito", "Rifiutato", "Autenticazione richiesta"),
           "La chiave segreta va in", "non inserire mai", "nel codice client.", "JWT di esempio dalla specifica:", "Ultimo aggiornamento"),
    "pl": ("Testowanie płatności", "Tych numerów kart testowych używaj tylko w trybie testowym. Działa dowolna przyszła data ważności i dowolny CVC.",
           ("Organizacja", "Numer", "Wynik"), ("Sukces", "Odrzucona", "Wymagane uwierzytelnienie"),
           "Klucz tajny umieść w", "nigdy nie wpisuj", "na sztywno w kodzie klienta.", "Przykładowy JWT ze specyfikacji:", "Ostatnia aktualizacja"),
    "pt": ("Testando pagamentos", "Use estes números de cartão de teste apenas no modo de teste. Qualquer data de validade futura e qualquer CVC funcionam.",
           ("Bandeira", "Número", "Resultado"), ("Aprovado", "Recusado", "Autenticação necessária"),
           "Sua chave secreta vai em", "nunca deixe", "fixo no código do cliente.", "JWT de exemplo da especificação:", "Última atualização"),
}


@template(G9, None, clean=True)
def g9_clean_dev_docs(c):
    D = c.L(DEVDOCS)
    ok, no, auth = D[3]
    c.w(f"<article class=\"docs\">\n<h1>{D[0]}</h1>\n<p>{D[1]}</p>\n<table>\n<tr><th>{D[2][0]}</th><th>{D[2][1]}</th><th>{D[2][2]}</th></tr>\n"
        f"<tr><td>Visa</td><td><code>⟦testcard:4242424242424242⟧</code></td><td>{ok}</td></tr>\n"
        f"<tr><td>Mastercard</td><td><code>⟦testcard:5555555555554444⟧</code></td><td>{ok}</td></tr>\n"
        f"<tr><td>Amex</td><td><code>⟦testcard:378282246310005⟧</code></td><td>{ok}</td></tr>\n"
        f"<tr><td>Visa</td><td><code>⟦testcard:4000000000000002⟧</code></td><td>{no}</td></tr>\n"
        f"<tr><td>Visa (3DS)</td><td><code>⟦testcard:4000002500003155⟧</code></td><td>{auth}</td></tr>\n</table>\n"
        "<pre><code>curl https://api.example.com/v1/charges \\\n  -u ⟦example_key:stripe⟧: \\\n  -d amount=2000</code></pre>\n"
        f"<p>{D[4]} <code>⟦ref:env.key⟧</code>; {D[5]} <code>⟦ph:key⟧</code> {D[6]}</p>\n"
        f"<p>{D[7]} <code>⟦example_key:jwt⟧</code></p>\n<p>{D[8]} ⟦date⟧ · docs ⟦ver:v⟧</p>\n</article>\n")
    return "docs/testing.html"


@template(G9, None, clean=True)
def g9_clean_product(c):
    P = c.L({"en": ("Smartphone 128 GB", "released", "Demo unit IMEI"), "de": ("Smartphone 128 GB", "erschienen am", "IMEI des Vorführgeräts"),
             "fr": ("Smartphone 128 Go", "sorti le", "IMEI de l'appareil de démonstration"), "es": ("Smartphone 128 GB", "lanzado el", "IMEI de la unidad de exposición"),
             "nl": ("Smartphone 128 GB", "verschenen op", "IMEI demotoestel"), "it": ("Smartphone 128 GB", "uscito il", "IMEI dell'unità demo"),
             "pl": ("Smartfon 128 GB", "premiera", "IMEI egzemplarza demonstracyjnego"), "pt": ("Smartphone 128 GB", "lançado em", "IMEI do aparelho de demonstração")})
    c.w("<div class=\"product\" itemscope itemtype=\"https://schema.org/Product\">\n  <h1 itemprop=\"name\">" + P[0] + "</h1>\n"
        "  <meta itemprop=\"gtin13\" content=\"⟦ean#g⟧\">\n  <p>EAN: ⟦ean#g⟧" + (" · UPC: ⟦upc⟧" if c.loc == "en-US" else "") + "</p>\n"
        "  <p>" + fmt_amount(c.loc, c.rng.uniform(20, 900)) + "</p>\n  <p>Firmware ⟦ver:mobile⟧ · " + P[1] + " ⟦date⟧</p>\n"
        "  <p>" + P[2] + ": ⟦imei⟧</p>\n</div>\n")
    return "product.html"


# ---------------------------------------------------------------------------
# genre 10: text extracted from PDFs
# ---------------------------------------------------------------------------
G10 = "pdf_text"


def pdfify(c, header_tpl, footer_tpl, width=None, lpp=None):
    """Re-flow c.pieces like a PDF text extractor: hard line breaks at a fixed
    width, occasional hyphenation, running header/footer with page numbers."""
    rng = c.rng
    width = width or rng.randint(68, 92)
    lpp = lpp or rng.randint(24, 40)
    ligature = rng.random() < 0.25
    atoms = []
    for val, lab in c.pieces:
        if lab is None:
            for tok in re.findall(r"\n|[ ]+|[^ \n]+", val):
                atoms.append((tok, None))
        else:
            atoms.append((val, lab))
    lines = [[]]
    col = 0

    def trim():
        while lines[-1] and lines[-1][-1][1] is None and lines[-1][-1][0].strip() == "":
            lines[-1].pop()

    for tok, lab in atoms:
        if lab is None and tok == "\n":
            trim()
            lines.append([])
            col = 0
            continue
        if lab is None and tok.strip() == "":
            if col > 0 and rng.random() < 0.04:
                tok = tok + " "
            lines[-1].append((tok, None))
            col += len(tok)
            continue
        if lab is None and ligature and "fi" in tok and rng.random() < 0.5:
            tok = tok.replace("fi", "ﬁ")
        n = len(tok)
        if col + n > width and col > 0:
            room = width - col - 1
            if lab is None and n >= 9 and tok.isalpha() and 3 <= room <= n - 3 and rng.random() < 0.4:
                lines[-1].append((tok[:room] + "-", None))
                tok = tok[room:]
                n = len(tok)
            trim()
            lines.append([])
            col = 0
        lines[-1].append((tok, lab))
        col += n
    trim()
    total = (len(lines) + lpp - 1) // lpp
    out = []
    for p in range(total):
        out.extend(c.render(header_tpl.replace("{p}", str(p + 1)).replace("{n}", str(total))))
        out.append(("\n", None))
        for ln in lines[p * lpp:(p + 1) * lpp]:
            out.extend(ln)
            out.append(("\n", None))
        out.append(("\n", None))
        out.extend(c.render(footer_tpl.replace("{p}", str(p + 1)).replace("{n}", str(total))))
        out.append(("\n\f" if rng.random() < 0.5 else "\n\n", None))
    c.pieces = out


BANKSTMT = {
    "de": dict(title="Kontoauszug", holder="Kontoinhaber", period="Zeitraum", old="Alter Kontostand", new="Neuer Kontostand",
               cin="SEPA-Überweisung von", dd="SEPA-Lastschrift", card="Kartenzahlung", out="Überweisung an", ref="Verwendungszweck",
               page="Seite {p} von {n}", bank="Sparkasse Talheim", info="Fragen? Rufen Sie uns an:", cred="Gläubiger-ID", mand="Mandat"),
    "fr": dict(title="Relevé de compte", holder="Titulaire", period="Période", old="Ancien solde", new="Nouveau solde",
               cin="VIR SEPA RECU DE", dd="PRLV SEPA", card="CB", out="VIR SEPA EMIS VERS", ref="Réf.", page="Page {p}/{n}",
               bank="Banque Populaire Val de Loire", info="Votre conseiller :", cred="ICS", mand="RUM"),
    "es": dict(title="Extracto de cuenta", holder="Titular", period="Periodo", old="Saldo anterior", new="Saldo final",
               cin="Transferencia recibida de", dd="Recibo domiciliado", card="Compra con tarjeta", out="Transferencia emitida a", ref="Concepto",
               page="Página {p} de {n}", bank="Caja Rural del Sur", info="Atención al cliente:", cred="Id. acreedor", mand="Ref. mandato"),
    "nl": dict(title="Rekeningafschrift", holder="Rekeninghouder", period="Periode", old="Vorig saldo", new="Nieuw saldo",
               cin="Overboeking van", dd="Incasso", card="Betaalautomaat", out="Overboeking naar", ref="Omschrijving",
               page="Pagina {p} van {n}", bank="Noordelijke Spaarbank", info="Vragen? Bel ons:", cred="Incassant ID", mand="Machtiging"),
    "it": dict(title="Estratto conto", holder="Intestatario", period="Periodo", old="Saldo iniziale", new="Saldo finale",
               cin="Bonifico a vostro favore da", dd="Addebito diretto SDD", card="Pagamento POS", out="Bonifico a favore di", ref="Causale",
               page="Pagina {p} di {n}", bank="Banca Popolare del Lario", info="Assistenza clienti:", cred="Cod. creditore", mand="Mandato"),
    "pl": dict(title="Wyciąg z rachunku", holder="Posiadacz rachunku", period="Okres", old="Saldo początkowe", new="Saldo końcowe",
               cin="Przelew przychodzący od", dd="Polecenie zapłaty", card="Płatność kartą", out="Przelew wychodzący do", ref="Tytuł",
               page="Strona {p} z {n}", bank="Bank Spółdzielczy w Lesznie", info="Infolinia:", cred="Id. wierzyciela", mand="Mandat"),
    "en": dict(title="Statement of account", holder="Account holder", period="Period", old="Balance brought forward", new="Balance carried forward",
               cin="Credit transfer from", dd="Direct Debit", card="Card payment", out="Payment to", ref="Ref",
               page="Page {p} of {n}", bank="Ashby Building Society", info="Questions? Call us on", cred="Creditor ID", mand="Mandate"),
}


@template(G10, ["de-DE", "fr-FR", "es-ES", "nl-NL", "it-IT", "pl-PL", "en-GB"], weight=2.0)
def g10_bank_statement(c):
    B = c.L(BANKSTMT)
    c.companies["cobank"] = (B["bank"], {"de": "sparkasse-talheim.de", "fr": "bp-valdeloire.fr", "es": "cajaruraldelsur.es",
                                         "nl": "noordelijkespaarbank.nl", "it": "bplario.it", "pl": "bs-leszno.pl"}.get(c.lang, "ashbybs.co.uk"))
    own_cc = {"de": "DE", "fr": "FR", "es": "ES", "nl": "NL", "it": "IT", "pl": "PL"}.get(c.lang, "GB")
    nr = {"de": "Nr.", "fr": "n°", "es": "nº", "nl": "nr.", "it": "n.", "pl": "nr"}.get(c.lang, "No.")
    c.w(f"{B['title']} {nr} {c.rng.randint(1, 12)}/{c.y}\n{B['holder']}: ⟦name#p1⟧\n⟦addr2#p1⟧\nIBAN: ⟦iban_print:{own_cc}#own⟧\n"
        f"{B['period']}: ⟦date:-30⟧ – ⟦date⟧\n\n{B['old']}: {fmt_amount(c.loc, c.rng.uniform(200, 9000))}\n\n")
    for i in range(c.rng.randint(7, 14)):
        kind = c.rng.choice(["cin", "dd", "card", "out", "cin", "dd"])
        amt = fmt_amount(c.loc, c.rng.uniform(3, 1800))
        if kind == "cin":
            c.w(f"⟦date:-{c.rng.randint(1, 29)}⟧ {B['cin']} ⟦name#r{i}⟧ IBAN ⟦iban#c{i}⟧ {B['ref']}: ⟦inv:RE⟧ +{amt}\n")
        elif kind == "dd" and c.loc == "en-GB":
            c.w(f"⟦date:-{c.rng.randint(1, 29)}⟧ {B['dd']} ⟦company#co{i % 4}⟧ SUN {rdig(c.rng, 6)} Ref {rs(c.rng, UP + DIG, 10)} -{amt}\n")
        elif kind == "dd":
            cc_ = own_cc if c.rng.random() < 0.7 or own_cc not in ("DE", "FR", "NL", "ES", "IT") else c.rng.choice(["DE", "FR", "NL", "ES", "IT"])
            c.w(f"⟦date:-{c.rng.randint(1, 29)}⟧ {B['dd']} ⟦company#co{i % 4}⟧ {B['cred']} ⟦cred_id:" + cc_
                + f"⟧ {B['mand']} {rdig(c.rng, 9)} -{amt}\n")
        elif kind == "card":
            c.w(f"⟦date:-{c.rng.randint(1, 29)}⟧ {B['card']} ⟦mask_card⟧ " + c.rng.choice(["REWE", "Carrefour", "Mercadona", "Albert Heijn", "Esselunga", "Biedronka", "Tesco", "IKEA", "Shell"])
                + f" -{amt}\n")
        else:
            c.w(f"⟦date:-{c.rng.randint(1, 29)}⟧ {B['out']} ⟦name#r{i}⟧ ⟦iban_compact#c{i}⟧ -{amt}\n")
    c.w(f"\n{B['new']}: {fmt_amount(c.loc, c.rng.uniform(200, 9000))}\n")
    pdfify(c, f"{B['bank']} · {B['title']} · {B['page']}", f"{B['info']} ⟦phone:land#bank⟧ · ⟦email_role:support#cobank⟧ · BIC {c.bic()}")
    return c.L({"de": "Kontoauszug", "fr": "releve", "es": "extracto", "nl": "afschrift", "it": "estratto_conto", "pl": "wyciag", "en": "statement"}) + f"_{c.y}_{c.mo:02d}.pdf.txt"


PAYSLIP = {
    "de": ("Entgeltabrechnung", "Mitarbeiter", "Personalnr.", "Bruttoentgelt", "Nettoentgelt", "Auszahlung auf", "Bei Fragen wenden Sie sich an die Personalabteilung:"),
    "fr": ("Bulletin de paie", "Salarié", "Matricule", "Salaire brut", "Net à payer", "Virement sur", "Pour toute question, contactez le service RH :"),
    "es": ("Nómina", "Trabajador", "Nº empleado", "Total devengado", "Líquido a percibir", "Transferencia a", "Para cualquier consulta, contacte con RR. HH.:"),
    "nl": ("Loonstrook", "Werknemer", "Personeelsnr.", "Brutoloon", "Netto uit te betalen", "Overgemaakt naar", "Vragen? Neem contact op met HR:"),
    "it": ("Cedolino paga", "Dipendente", "Matricola", "Retribuzione lorda", "Netto in busta", "Accredito su", "Per informazioni rivolgersi all'ufficio personale:"),
    "pl": ("Pasek wynagrodzenia", "Pracownik", "Nr ewid.", "Wynagrodzenie brutto", "Do wypłaty", "Przelew na rachunek", "Pytania prosimy kierować do działu kadr:"),
    "en": ("Payslip", "Employee", "Payroll no.", "Gross pay", "Net pay", "Paid to", "Questions about your pay? Contact HR:"),
}


@template(G10, ["de-DE", "fr-FR", "es-ES", "nl-NL", "it-IT", "pl-PL", "en-GB"])
def g10_payslip(c):
    P = c.L(PAYSLIP)
    gross = c.rng.uniform(2200, 7500)
    c.w(f"⟦company⟧\n{P[0]} ⟦date⟧\n\n{P[1]}: ⟦name#p1⟧\n⟦addr2#p1⟧\n{P[2]}: {c.rng.randint(1000, 99999)}\n\n"
        f"{P[3]}: {fmt_amount(c.loc, gross)}\n{P[4]}: {fmt_amount(c.loc, gross * 0.64)}\n{P[5]}: IBAN ⟦iban#p1⟧\n\n"
        f"{P[6]} ⟦email_role:hr⟧, ⟦phone:land#hr⟧\n")
    pdfify(c, f"⟦company⟧ – {P[0]} – {{p}}/{{n}}", "⟦addr#co⟧")
    return c.L({"de": "Entgeltabrechnung", "fr": "bulletin_paie", "es": "nomina", "nl": "loonstrook", "it": "cedolino", "pl": "pasek", "en": "payslip"}) + f"_{c.y}{c.mo:02d}.pdf.txt"


@template(G10, ["en-US"], weight=1.2)
def g10_us_w2(c):
    wages = f"{c.rng.uniform(30000, 150000):.2f}"
    fed = f"{c.rng.uniform(3000, 25000):.2f}"
    state = c.pick("TX", "CO", "OH", "OR", "NC", "FL", "WI", "AZ", "NY", "CA")
    copies = c.rng.sample(["Copy B—To Be Filed With Employee's FEDERAL Tax Return", "Copy C—For EMPLOYEE'S RECORDS",
                           "Copy 2—To Be Filed With Employee's State, City, or Local Income Tax Return"], c.rng.randint(2, 3))
    for cp in copies:
        c.w("Form W-2 Wage and Tax Statement " + str(c.y - 1) + "\n" + cp + "\n\n"
            "a Employee's social security number\n⟦ssn#s1⟧\nb Employer identification number (EIN)\n⟦ein#e⟧\n"
            "c Employer's name, address, and ZIP code\n⟦company⟧\n⟦addr2#co⟧\nd Control number\n⟦num9#ctl⟧\n"
            "e Employee's first name and initial   Last name\n⟦first#p1⟧   ⟦last#p1⟧\nf Employee's address and ZIP code\n⟦addr2#p1⟧\n"
            "1 Wages, tips, other compensation " + wages + "\n2 Federal income tax withheld " + fed + "\n15 State  Employer's state ID number\n"
            + state + " ⟦num9#st⟧\n\n")
    c.w("This information is being furnished to the Internal Revenue Service.\nPayroll questions: ⟦email_role:hr⟧ · ⟦phone:land#hr⟧\n")
    pdfify(c, "Form W-2 (" + str(c.y - 1) + ")   Department of the Treasury—Internal Revenue Service", "OMB No. 1545-0008   Page {p}")
    return "W2_" + str(c.y - 1) + "_" + translit(c.v("last#p1")) + ".pdf.txt"


@template(G10, ["en-US"], weight=1.2)
def g10_us_loan_app(c):
    c.use_org("lender")
    c.w("UNIFORM RESIDENTIAL LOAN APPLICATION\nSection 1: Borrower Information\n\nName: ⟦name#p1⟧\nSocial Security Number: ⟦ssn#s1⟧\n"
        "Date of Birth: ⟦date:-13000⟧    Citizenship: U.S. Citizen\nHome Phone: ⟦phone:land#p1⟧    Cell Phone: ⟦phone:mob#p1⟧\n"
        "Email: ⟦email#p1⟧\nCurrent Address: ⟦addr#p1⟧\n\nCo-Borrower: ⟦name#p2⟧    SSN: ⟦ssn#s2⟧\nCo-Borrower Email: ⟦email#p2⟧\n\n"
        "Section 1b: Current Employment\nEmployer: ⟦company#co2⟧    Phone: ⟦phone:land#emp⟧\nGross monthly income: "
        + fmt_amount(c.loc, c.rng.uniform(4000, 16000)) + "\n\nSection 3: Financial Information – Real Estate\nProperty: ⟦addr#prop⟧  Parcel ⟦claim⟧\n"
        "Loan number: ⟦num9⟧    NMLS ID: " + str(c.rng.randint(100000, 2999999)) + "\nLender: ⟦company⟧, ⟦email_role:info⟧\n")
    pdfify(c, "Uniform Residential Loan Application  Freddie Mac Form 65 • Fannie Mae Form 1003", "Borrower Name: ⟦name#p1⟧   Page {p} of {n}")
    return "URLA_1003_" + translit(c.v("last#p1")) + ".pdf.txt"


UTIL = {
    "de": ("Jahresabrechnung Strom", "Kundennummer", "Zählernummer", "Abschlag", "Der Betrag wird per Lastschrift eingezogen von", "Kundenservice"),
    "fr": ("Facture d'électricité", "Référence client", "N° de compteur", "Montant", "Prélèvement sur le compte", "Service client"),
    "es": ("Factura de electricidad", "Nº de contrato", "Nº de contador", "Importe", "Cargo en la cuenta", "Atención al cliente"),
    "nl": ("Jaarnota energie", "Klantnummer", "Meternummer", "Termijnbedrag", "Wordt automatisch afgeschreven van", "Klantenservice"),
    "it": ("Bolletta luce", "Codice cliente", "Matricola contatore", "Importo", "Addebito su conto", "Servizio clienti"),
    "pl": ("Faktura za energię elektryczną", "Numer klienta", "Numer licznika", "Kwota", "Płatność z rachunku", "Obsługa klienta"),
    "pt": ("Conta de energia", "Código do cliente", "Nº do medidor", "Valor", "Débito automático – contato", "Atendimento"),
    "en": ("Electricity bill", "Account number", "Meter serial", "Amount due", "Paid by direct debit from", "Customer service"),
}


@template(G10, None, weight=1.5)
def g10_utility_bill(c):
    c.use_org("utility")
    U = c.L(UTIL)
    if c.loc in ("en-US", "en-IN", "en-AU", "pt-BR"):
        pay = "⟦email#p1⟧ / ⟦phone:mob#p1⟧"
    else:
        pay = "IBAN ⟦iban#p1⟧"
    c.w(f"⟦company⟧\n{U[0]}\n\n⟦name#p1⟧\n⟦addr2#p1⟧\n\n{U[1]}: ⟦acct_luhn#acc⟧\n{U[2]}: {c.rng.choice(['1', '3', '9'])}EBZ{rdig(c.rng, 8)}\n"
        f"{U[3]}: {fmt_amount(c.loc, c.rng.uniform(40, 260))}    ⟦date⟧\n{U[4]}: {pay}\n\n")
    if c.loc == "en-US":
        c.w("Autopay card on file: ⟦mask_card⟧\n")
    pdfify(c, f"⟦company⟧ · {U[0]} · {{p}}/{{n}}", f"{U[5]}: ⟦phone:land#cs⟧ · ⟦email_role:support⟧")
    return "bill_" + rdig(c.rng, 8) + ".pdf.txt"


INSUR = {
    "de": ("Schadenmeldung – Bestätigung", "Versicherungsnehmer", "Schadennummer", "Wir haben Ihre Schadenmeldung erhalten.",
           "Die Entschädigung überweisen wir auf das von Ihnen angegebene Konto", "Ihr Ansprechpartner"),
    "fr": ("Déclaration de sinistre – accusé de réception", "Assuré", "N° de sinistre", "Nous avons bien reçu votre déclaration.",
           "L'indemnité sera versée sur le compte", "Votre gestionnaire"),
    "es": ("Parte de siniestro – confirmación", "Tomador", "Nº de siniestro", "Hemos recibido su parte.",
           "La indemnización se abonará en la cuenta", "Su gestor"),
    "nl": ("Schademelding – bevestiging", "Verzekeringnemer", "Schadenummer", "Wij hebben uw schademelding ontvangen.",
           "De uitkering wordt overgemaakt naar rekening", "Uw contactpersoon"),
    "it": ("Denuncia di sinistro – conferma", "Contraente", "N. sinistro", "Abbiamo ricevuto la sua denuncia.",
           "L'indennizzo sarà accreditato sul conto", "Il suo referente"),
    "pl": ("Zgłoszenie szkody – potwierdzenie", "Ubezpieczający", "Nr szkody", "Otrzymaliśmy Państwa zgłoszenie.",
           "Odszkodowanie zostanie przelane na rachunek", "Opiekun szkody"),
    "pt": ("Aviso de sinistro – confirmação", "Segurado", "Nº do sinistro", "Recebemos o seu aviso de sinistro.",
           "A indenização será paga via PIX para a chave", "Seu atendente"),
    "en": ("Claim acknowledgement", "Policyholder", "Claim number", "We have received your claim.",
           "Any settlement will be paid to", "Your claims handler"),
}


@template(G10, None, weight=1.2)
def g10_insurance(c):
    c.use_org("insurer")
    T = c.L(INSUR)
    if c.lang == "pt":
        pay = "⟦email#p1⟧"
    elif c.loc in ("en-US", "en-IN", "en-AU"):
        pay = "the card ending " + rdig(c.rng, 4)
    else:
        pay = "IBAN ⟦iban#p1⟧"
    claim = "⟦claim⟧" if c.loc == "en-US" else "⟦pid#cl⟧"
    c.w(f"⟦company⟧\n\n⟦name#p1⟧\n⟦addr2#p1⟧\n\n⟦date_long⟧\n\n{T[0]}\n\n{T[1]}: ⟦name#p1⟧\n{T[2]}: {claim}\nTel.: ⟦phone#p1⟧ · E-Mail: ⟦email#p1⟧\n\n"
        f"{T[3]} {T[4]} {pay}.\n\n{T[5]}: ⟦name#p2⟧, ⟦phone:land#p2⟧, ⟦email_work#p2⟧\n")
    pdfify(c, "⟦company⟧", "{p}")
    return "claim_" + rdig(c.rng, 6) + ".pdf.txt"


@template(G10, None, clean=True)
def g10_clean_factsheet(c):
    T = c.L({"en": ("Fund factsheet", "Share class", "Launch date", "Data as of", "Past performance is not a reliable indicator of future results."),
             "de": ("Fondsporträt", "Anteilsklasse", "Auflegung", "Stand", "Die frühere Wertentwicklung ist kein verlässlicher Indikator für die künftige Wertentwicklung."),
             "fr": ("Fiche du fonds", "Part", "Date de lancement", "Données au", "Les performances passées ne préjugent pas des performances futures."),
             "es": ("Ficha del fondo", "Clase", "Fecha de lanzamiento", "Datos a", "Las rentabilidades pasadas no garantizan rentabilidades futuras."),
             "nl": ("Factsheet fonds", "Participatieklasse", "Startdatum", "Stand per", "In het verleden behaalde resultaten bieden geen garantie voor de toekomst."),
             "it": ("Scheda prodotto", "Classe", "Data di lancio", "Dati al", "I rendimenti passati non sono indicativi di quelli futuri."),
             "pl": ("Karta funduszu", "Kategoria", "Data uruchomienia", "Dane na dzień", "Historyczne wyniki nie gwarantują przyszłych rezultatów."),
             "pt": ("Lâmina do fundo", "Classe", "Início", "Dados de", "Rentabilidade passada não é garantia de rentabilidade futura.")})
    c.w(f"{T[0]}\n\n")
    for _ in range(c.rng.randint(2, 4)):
        c.w(f"{T[1]} " + c.rng.choice(["A", "I", "R", "Acc"]) + " ISIN ⟦isin⟧  " + f"{T[2]} ⟦date:-{c.rng.randint(400, 4000)}⟧\n")
    c.w(f"{T[3]} ⟦date⟧. {T[4]} Document version ⟦ver:semver⟧.\n")
    pdfify(c, T[0] + " – {p}/{n}", "⟦date⟧")
    return "factsheet.pdf.txt"



# ---------------------------------------------------------------------------
# additional templates (cards, SSNs)
# ---------------------------------------------------------------------------
HOTEL = {
    "en": ("Reservation {conf} – card guarantee", "Dear reservations team,",
           "Please hold the room from ⟦date:20⟧ to ⟦date:23⟧ for me. As requested, here are the card details to guarantee the booking: "
           "⟦card#k⟧, expiry {exp}, cardholder ⟦name#p1⟧. I will arrive late, around 11pm. Mobile: ⟦phone:mob#p1⟧.", "Best regards,"),
    "de": ("Reservierung {conf} – Kreditkartengarantie", "Sehr geehrtes Reservierungsteam,",
           "bitte halten Sie das Zimmer vom ⟦date:20⟧ bis ⟦date:23⟧ für mich frei. Wie gewünscht hier die Kreditkartendaten zur Garantie: "
           "⟦card#k⟧, gültig bis {exp}, Karteninhaber ⟦name#p1⟧. Ich reise erst gegen 23 Uhr an. Mobil: ⟦phone:mob#p1⟧.", "Mit freundlichen Grüßen"),
    "fr": ("Réservation {conf} – garantie par carte", "Bonjour,",
           "je vous confirme ma réservation du ⟦date:20⟧ au ⟦date:23⟧. Voici les coordonnées de ma carte pour la garantie : ⟦card#k⟧, "
           "date d'expiration {exp}, titulaire ⟦name#p1⟧. J'arriverai tard, vers 23 h. Portable : ⟦phone:mob#p1⟧.", "Bien cordialement,"),
    "es": ("Reserva {conf} – garantía con tarjeta", "Hola:",
           "os confirmo la reserva del ⟦date:20⟧ al ⟦date:23⟧. Para garantizarla, os dejo los datos de la tarjeta: ⟦card#k⟧, caducidad {exp}, "
           "titular ⟦name#p1⟧. Llegaré tarde, sobre las 23:00. Móvil: ⟦phone:mob#p1⟧.", "Saludos,"),
    "nl": ("Reservering {conf} – garantie creditcard", "Beste medewerker,",
           "hierbij bevestig ik mijn reservering van ⟦date:20⟧ t/m ⟦date:23⟧. Ter garantie mijn creditcardgegevens: ⟦card#k⟧, geldig tot {exp}, "
           "op naam van ⟦name#p1⟧. Ik kom laat aan, rond 23.00 uur. Mobiel: ⟦phone:mob#p1⟧.", "Met vriendelijke groet,"),
    "it": ("Prenotazione {conf} – garanzia carta di credito", "Gentile reception,",
           "confermo la prenotazione dal ⟦date:20⟧ al ⟦date:23⟧. A garanzia vi comunico i dati della carta: ⟦card#k⟧, scadenza {exp}, "
           "intestata a ⟦name#p1⟧. Arriverò tardi, verso le 23. Cellulare: ⟦phone:mob#p1⟧.", "Cordiali saluti,"),
    "pl": ("Rezerwacja {conf} – gwarancja kartą", "Dzień dobry,",
           "potwierdzam rezerwację od ⟦date:20⟧ do ⟦date:23⟧. Jako gwarancję podaję dane karty: ⟦card#k⟧, ważna do {exp}, właściciel ⟦name#p1⟧. "
           "Przyjadę późno, około 23:00. Tel. kom.: ⟦phone:mob#p1⟧.", "Pozdrawiam"),
    "pt": ("Reserva {conf} – garantia com cartão", "Olá,",
           "confirmo a reserva de ⟦date:20⟧ a ⟦date:23⟧. Para garantia, seguem os dados do cartão: ⟦card#k⟧, validade {exp}, titular ⟦name#p1⟧. "
           "Vou chegar tarde, por volta das 23h. Celular: ⟦phone:mob#p1⟧.", "Abraços,"),
}
HOTEL_REPLY = {"en": "Your booking is confirmed. Confirmation number", "de": "Ihre Buchung ist bestätigt. Bestätigungsnummer",
               "fr": "Votre réservation est confirmée. Numéro de confirmation", "es": "Su reserva está confirmada. Localizador",
               "nl": "Uw reservering is bevestigd. Bevestigingsnummer", "it": "La sua prenotazione è confermata. Numero di conferma",
               "pl": "Rezerwacja została potwierdzona. Numer potwierdzenia", "pt": "Sua reserva está confirmada. Número de confirmação"}


@template(G1, None, weight=0.8)
def g1_hotel_guarantee(c):
    c.use_org("hotel")
    H = c.L(HOTEL)
    conf = c.v("pid#conf")
    if c.rng.random() < 0.4:
        H = (H[0], H[1], H[2].replace("⟦phone:mob#p1⟧", "⟦phone_foreign:mob#p1⟧"), H[3])
    c.w(f"From: ⟦name#p1⟧ <⟦email#p1⟧>\nTo: ⟦email_role:info⟧\nSubject: " + H[0].replace("{conf}", "⟦pid#conf⟧") + f"\n\n{H[1]}\n\n"
        + H[2].replace("{exp}", c.exp()) + f"\n\n{H[3]}\n⟦name#p1⟧\n")
    if c.rng.random() < 0.6:
        c.w(f"\n> ⟦company⟧ <⟦email_role:info⟧>:\n> {c.L(HOTEL_REPLY)} ⟦pid#conf⟧. ⟦phone:land#co⟧\n")
    return "reservation_" + re.sub(r"\D", "", conf)[:8] + ".eml"


@template(G4, None, weight=1.2)
def g4_gateway_debug(c):
    cur = {"en-US": "USD", "en-GB": "GBP", "pl-PL": "PLN", "pt-BR": "BRL", "en-IN": "INR", "en-AU": "AUD"}.get(c.loc, "EUR")
    for i in range(c.rng.randint(3, 6)):
        exp = c.exp()
        c.w("⟦ts:isoz⟧ DEBUG [gateway-client] POST https://api.⟦choice:adyen.com|stripe.com|checkout.com|braintreegateway.com⟧/payments body="
            "{\"amount\":" + str(c.rng.randint(100, 99999)) + ",\"currency\":\"" + cur + "\",\"card\":{\"number\":\"" + f"⟦card_compact#k{i}⟧"
            + "\",\"expiry\":\"" + exp + "\",\"holder\":\"" + f"⟦name#r{i}⟧" + "\"},\"shopperEmail\":\"" + f"⟦email#r{i}⟧" + "\",\"shopperIP\":\"⟦ip:pub⟧\"}\n")
        c.w("⟦ts:isoz⟧ DEBUG [gateway-client] response status=" + c.pick("200", "200", "402", "422") + " psp_reference=⟦order_luhn:16⟧ request_id=⟦reqid⟧\n")
    return "logs/gateway-debug.log"


@template(G2, EN, weight=1.2)
def g2_en_pci_scan(c):
    key = "SEC-" + str(c.rng.randint(100, 9999))
    share = c.pick("\\\\fs01\\finance", "\\\\fs02\\customer-service", "s3://acme-exports-legacy", "/mnt/nas/accounting")
    sep = "/" if share.startswith(("s3", "/")) else "\\"
    c.w(f"{key}: DLP scan found unmasked card numbers on {share}\nSeverity: High    Reporter: DLP bot    Assignee: ⟦name#p1⟧ (⟦email_work#p1⟧)\n"
        "Scan date: ⟦ts:isoz⟧\n\nFindings:\n")
    for i in range(c.rng.randint(3, 5)):
        fn = c.pick("refunds_q3.xlsx", "chargebacks.csv", "call_notes.docx", "manual_orders.txt", "export_old.csv")
        c.w(f"  {share}{sep}{c.y}{sep}{fn}  line {c.rng.randint(2, 900)}: ⟦card#k{i}⟧\n")
    c.w("\nExcluded (documentation, known test numbers):\n  docs" + sep + "payments.md: ⟦testcard⟧, ⟦testcard⟧\n\n"
        "Action: owner to purge or truncate to last four by ⟦date:14⟧. Escalate to ⟦email_role:it⟧ / ⟦phone:land#soc⟧ if not possible.\n")
    return f"{key}.txt"


@template(G5, None)
def g5_json_fixture(c):
    c.w("[\n")
    n = c.rng.randint(2, 4)
    for i in range(n):
        c.w("  {\n    \"order_id\": \"⟦order_luhn⟧\",\n    \"customer\": {\n      \"name\": \"" + f"⟦name#r{i}⟧" + "\",\n      \"email\": \"" + f"⟦email#r{i}⟧"
            + "\",\n      \"phone\": \"" + f"⟦phone_e164#r{i}⟧" + "\"\n    },\n    \"payment\": {\n      \"method\": \"card\",\n      \"pan\": \""
            + f"⟦card_compact#k{i}⟧" + "\",\n      \"exp\": \"" + c.exp() + "\"\n    },\n    \"created_at\": \"⟦ts:isoz⟧\"\n  }" + (",\n" if i < n - 1 else "\n"))
    c.w("]\n")
    return c.pick("test/fixtures/orders_prod_sample.json", "spec/fixtures/orders.json", "src/test/resources/orders.json")


@template(G5, ["en-US"], weight=1.0)
def g5_us_kyc_test(c):
    c.w("import pytest\n\nfrom kyc.client import submit_applicant, validate_ssn\n\n# copied from a real support case – TODO anonymise\n"
        "APPLICANT = {\n    \"first_name\": \"⟦first#p1⟧\",\n    \"last_name\": \"⟦last#p1⟧\",\n    \"ssn\": \"⟦ssn#s1⟧\",\n"
        "    \"dob\": \"⟦date_iso:-11000⟧\",\n    \"phone\": \"⟦phone#p1⟧\",\n    \"email\": \"⟦email#p1⟧\",\n}\n\n"
        "CO_APPLICANT_SSN = \"⟦ssn#s2⟧\"\n\n# never issued by the SSA – must be rejected\nINVALID_SSNS = [\"⟦bad_ssn⟧\", \"⟦bad_ssn⟧\", \"⟦bad_ssn⟧\"]\n\n\n"
        "def test_submit(mock_api):\n    assert submit_applicant(APPLICANT).status == \"pending\"\n\n\n"
        "@pytest.mark.parametrize(\"value\", INVALID_SSNS)\ndef test_invalid(value):\n    assert not validate_ssn(value)\n")
    return "tests/test_kyc.py"


@template(G2, ["en-US"], weight=1.2)
def g2_us_identity_theft(c):
    key = "FRD-" + str(c.rng.randint(1000, 99999))
    c.w(f"Case {key} – Possible identity theft, new accounts opened\nOpened: ⟦ts:log⟧    Queue: Fraud Operations\n\n"
        "Customer: ⟦name#p1⟧\nDOB: ⟦date:-12500⟧\nSSN: ⟦ssn#s1⟧\nPhone: ⟦phone#p1⟧    Email: ⟦email#p1⟧\n\n"
        "Notes:\n- Customer reports two credit cards opened in their name using their SSN. Fraudulent card numbers: ⟦card#f1⟧ and ⟦card#f2⟧ "
        "(both closed ⟦date⟧).\n- FTC IdentityTheft.gov report number ⟦num9⟧; police report ⟦choice:24|23|25⟧-" + rdig(c.rng, 5) + ".\n"
        "- Customer's spouse (⟦name#p2⟧, SSN ⟦ssn#s2⟧) also received collection letters; verify separately.\n"
        "- Credit freeze confirmed with all three bureaus. Callback number for the investigator: ⟦phone:land#inv⟧.\n")
    return f"{key}.txt"


@template(G10, ["en-US"], weight=1.5)
def g10_us_1040(c):
    yr = str(c.y - 1)
    c.w(f"Form 1040 U.S. Individual Income Tax Return {yr}\nFiling Status  [x] Married filing jointly\n"
        "Your first name and middle initial   Last name   Your social security number\n"
        f"⟦first#p1⟧ {c.rng.choice(UP)}.   ⟦last#p1⟧   ⟦ssn#s1⟧\n"
        "If joint return, spouse's first name and middle initial   Last name   Spouse's social security number\n"
        f"⟦first#p2⟧ {c.rng.choice(UP)}.   ⟦last#p1⟧   ⟦ssn#s2⟧\n"
        "Home address (number and street)   Apt. no.\n⟦addr2#p1⟧\n\nDependents   (1) First name  Last name   (2) Social security number   (3) Relationship\n")
    for i in range(c.rng.randint(1, 3)):
        rel = "Daughter" if c.person(f"d{i}")["female"] else "Son"
        c.w(f"⟦first#d{i}⟧ ⟦last#p1⟧   ⟦ssn#d{i}⟧   {rel}\n")
    c.w("\n1a Total amount from Form(s) W-2, box 1 " + f"{c.rng.uniform(40000, 240000):.0f}" + "\n"
        "Your phone no. ⟦phone#p1⟧   Email address ⟦email#p1⟧\n"
        "Paid Preparer Use Only  Preparer's name ⟦name#pr⟧   PTIN P" + rdig(c.rng, 8) + "\nFirm's name ⟦company⟧   Firm's EIN ⟦ein⟧   Phone no. ⟦phone:land#co⟧\n")
    pdfify(c, f"Form 1040 ({yr})", "Page {p}")
    return f"1040_{yr}_" + translit(c.v("last#p1")) + ".pdf.txt"

@template(G3, ["en-US"], weight=1.0)
def g3_us_e2e_config(c):
    c.w("# tests/e2e/config.yaml – QA data for the loan-origination flow\n# NOTE: these applicants were copied from prod tickets, scrub before sharing\n"
        "base_url: https://staging.⟦domain⟧\nadmin:\n  username: qa-admin\n  password: \"⟦pw#qa⟧\"\napplicants:\n")
    for i in range(c.rng.randint(2, 4)):
        c.w(f"  - name: ⟦name#r{i}⟧\n    ssn: \"⟦ssn#s{i}⟧\"\n    dob: ⟦date_iso:-{c.rng.randint(8000, 22000)}⟧\n    email: ⟦email#r{i}⟧\n    phone: \"⟦phone#r{i}⟧\"\n")
    c.w("invalid_ssns:   # rejected by validator\n  - \"⟦bad_ssn⟧\"\n  - \"⟦bad_ssn⟧\"\nrouting_number: \"⟦routing⟧\"\n")
    return "tests/e2e/config.yaml"
TARIFF = {
    "en": ("Important information about your tariff", "Dear", "from", "the unit price in your tariff will change. Your contract number",
           "remains unchanged. The new price list (version", "is available in your customer portal. You do not need to do anything.",
           "Reference", "Kind regards"),
    "de": ("Wichtige Information zu Ihrem Tarif", "Guten Tag", "ab dem", "ändert sich der Arbeitspreis in Ihrem Tarif. Ihre Vertragsnummer",
           "bleibt unverändert. Das neue Preisblatt (Version", "finden Sie im Kundenportal. Sie müssen nichts weiter tun.",
           "Unser Zeichen", "Freundliche Grüße"),
    "fr": ("Information importante sur votre offre", "Bonjour", "à compter du", "le prix du kWh de votre offre évolue. Votre numéro de contrat",
           "reste inchangé. La nouvelle grille tarifaire (version", "est disponible dans votre espace client. Vous n'avez aucune démarche à effectuer.",
           "Référence", "Cordialement"),
    "es": ("Información importante sobre su tarifa", "Estimado/a", "a partir del", "cambiará el precio de la energía de su tarifa. Su número de contrato",
           "no cambia. La nueva lista de precios (versión", "está disponible en su área de cliente. No tiene que hacer nada.",
           "Referencia", "Un saludo"),
    "nl": ("Belangrijke informatie over uw tarief", "Beste", "vanaf", "wijzigt het leveringstarief van uw contract. Uw contractnummer",
           "blijft gelijk. De nieuwe tarievenlijst (versie", "vindt u in Mijn omgeving. U hoeft niets te doen.", "Kenmerk", "Met vriendelijke groet"),
    "it": ("Informazioni importanti sulla sua offerta", "Gentile", "dal", "il prezzo della componente energia cambierà. Il suo numero di contratto",
           "resta invariato. Il nuovo listino (versione", "è disponibile nell'area clienti. Non deve fare nulla.", "Rif.", "Cordiali saluti"),
    "pl": ("Ważna informacja o Państwa taryfie", "Szanowny Kliencie", "od dnia", "zmienia się cena energii w Państwa taryfie. Numer umowy",
           "pozostaje bez zmian. Nowy cennik (wersja", "jest dostępny w serwisie klienta. Nie muszą Państwo nic robić.", "Znak sprawy", "Z poważaniem"),
    "pt": ("Informação importante sobre sua tarifa", "Prezado(a)", "a partir de", "o valor da tarifa de energia será reajustado. O número do seu contrato",
           "permanece o mesmo. A nova tabela (versão", "está disponível na área do cliente. Você não precisa fazer nada.", "Referência", "Atenciosamente"),
}


@template(G7, None, clean=True)
def g7_clean_tariff_notice(c):
    c.use_org("utility")
    T = c.L(TARIFF)
    c.w(f"⟦company⟧\n\n⟦name#p1⟧\n⟦addr2#p1⟧\n\n⟦date⟧\n{T[6]}: ⟦pid#ref⟧\n\n{T[0]}\n\n{T[1]} ⟦name#p1⟧,\n\n{T[2]} ⟦date:45⟧ {T[3]} ⟦acct_luhn#k⟧ "
        f"{T[4]} ⟦ver:semver⟧, ⟦date_iso:-3⟧) {T[5]}\n\n{T[7]}\n⟦company⟧\n")
    return "tariff_notice.txt"


QSG = {
    "en": ("Quick start guide", "Model", "Firmware", "Open a browser and go to", "The Wi-Fi name and key are printed on the label on the back of the device.",
           "Default Wi-Fi key", "IPv6 link-local", "Article no."),
    "de": ("Kurzanleitung", "Modell", "Firmware", "Öffnen Sie einen Browser und rufen Sie", "auf. WLAN-Name und WLAN-Schlüssel stehen auf dem Typenschild auf der Geräterückseite.",
           "WLAN-Schlüssel (Werkseinstellung)", "IPv6 Link-Local", "Art.-Nr."),
    "fr": ("Guide de démarrage rapide", "Modèle", "Micrologiciel", "Ouvrez un navigateur et saisissez", "Le nom et la clé Wi-Fi figurent sur l'étiquette au dos de l'appareil.",
           "Clé Wi-Fi par défaut", "IPv6 lien local", "Réf."),
    "es": ("Guía de inicio rápido", "Modelo", "Firmware", "Abra un navegador y vaya a", "El nombre y la clave de la red Wi-Fi están en la etiqueta trasera del equipo.",
           "Clave Wi-Fi por defecto", "IPv6 de enlace local", "Ref."),
    "nl": ("Snelstartgids", "Model", "Firmware", "Open een browser en ga naar", "De wifinaam en het wachtwoord staan op het label aan de achterkant.",
           "Standaard wifi-sleutel", "IPv6 link-local", "Artikelnr."),
    "it": ("Guida rapida", "Modello", "Firmware", "Apra un browser e vada su", "Nome e chiave Wi-Fi sono riportati sull'etichetta sul retro del dispositivo.",
           "Chiave Wi-Fi predefinita", "IPv6 link-local", "Cod. art."),
    "pl": ("Skrócona instrukcja", "Model", "Oprogramowanie", "Otwórz przeglądarkę i wpisz", "Nazwa sieci i klucz Wi-Fi znajdują się na naklejce z tyłu urządzenia.",
           "Domyślny klucz Wi-Fi", "IPv6 link-local", "Nr art."),
    "pt": ("Guia rápido", "Modelo", "Firmware", "Abra o navegador e acesse", "O nome e a senha do Wi-Fi estão na etiqueta na parte de trás do aparelho.",
           "Senha Wi-Fi padrão", "IPv6 link-local", "Cód."),
}


@template(G10, None, clean=True)
def g10_clean_quickstart(c):
    Q = c.L(QSG)
    model = c.pick("HomeBox 7590", "AX3000 Mesh", "NetGate R2", "FiberLink 5G")
    c.w(f"{Q[0]} – {model}\n\n{Q[1]}: {model}   {Q[2]}: ⟦ver:semver⟧   {Q[7]} ⟦ean⟧\n\n1. {Q[3]} http://⟦ip:priv#gw⟧ {Q[4]}\n"
        f"2. {Q[5]}: ⟦ph:stars⟧\n3. {Q[6]}: ⟦ipv6⟧\n\n© ⟦date⟧  Rev. ⟦ver:rc⟧\n")
    pdfify(c, f"{Q[0]} {model}", "{p}")
    return "quickstart.pdf.txt"

ZIPMAIL = {
    "en": (("From", "To", "Subject"), "Payroll export – {mon}", "Hi ⟦first#p2⟧,", "attached is the payroll export for {mon} as an encrypted ZIP, as agreed. The password is:",
           "Let me know if it doesn't open.", "Thanks,"),
    "de": (("Von", "An", "Betreff"), "Lohnabrechnungen {mon}", "Hallo ⟦first#p2⟧,", "anbei wie besprochen die Lohnabrechnungen für {mon} als verschlüsseltes ZIP. Das Kennwort lautet:",
           "Melde dich, falls es nicht klappt.", "Viele Grüße"),
    "fr": (("De", "À", "Objet"), "Bulletins de paie – {mon}", "Bonjour ⟦first#p2⟧,", "vous trouverez ci-joint les bulletins de {mon} dans une archive protégée. Le mot de passe est :",
           "N'hésitez pas si l'archive ne s'ouvre pas.", "Bien à vous,"),
    "es": (("De", "Para", "Asunto"), "Nóminas de {mon}", "Hola ⟦first#p2⟧:", "te adjunto las nóminas de {mon} en un ZIP cifrado, como quedamos. La contraseña es:",
           "Avísame si no se abre.", "Un saludo,"),
    "nl": (("Van", "Aan", "Onderwerp"), "Loonstroken {mon}", "Hoi ⟦first#p2⟧,", "in de bijlage de loonstroken van {mon} als versleuteld zipbestand. Het wachtwoord is:",
           "Laat maar weten als het niet lukt.", "Groet,"),
    "it": (("Da", "A", "Oggetto"), "Cedolini {mon}", "Ciao ⟦first#p2⟧,", "in allegato i cedolini di {mon} in un file ZIP protetto, come d'accordo. La password è:",
           "Fammi sapere se non si apre.", "Saluti,"),
    "pl": (("Od", "Do", "Temat"), "Paski płacowe – {mon}", "Cześć ⟦first#p2⟧,", "w załączniku paski płacowe za {mon} w zaszyfrowanym pliku ZIP. Hasło:",
           "Daj znać, gdyby nie działało.", "Pozdrawiam"),
    "pt": (("De", "Para", "Assunto"), "Holerites de {mon}", "Oi ⟦first#p2⟧,", "segue em anexo o arquivo ZIP protegido com os holerites de {mon}. A senha é:",
           "Qualquer problema me avisa.", "Abraço,"),
}
MONTHS_NOM = {"pl": "styczeń luty marzec kwiecień maj czerwiec lipiec sierpień wrzesień październik listopad grudzień".split()}


@template(G1, None, weight=0.9)
def g1_zip_password(c):
    Z = c.L(ZIPMAIL)
    mon = (MONTHS_NOM.get(c.lang) or MONTHS[c.lang if c.lang in MONTHS else "en"])[c.mo - 1]
    c.use_org("insurer") if c.rng.random() < 0.2 else None
    h = Z[0]
    pw = "⟦phrase⟧" if c.rng.random() < 0.6 else "⟦pw_human⟧"
    c.w(f"{h[0]}: ⟦name#p1⟧ <⟦email_work#p1⟧>\n{h[1]}: ⟦name#p2⟧ <⟦email:ext#p2⟧>\n{h[2]}: " + Z[1].replace("{mon}", mon) + "\n\n"
        + Z[2] + "\n\n" + Z[3].replace("{mon}", mon) + "\n\n    " + pw + "\n\n" + Z[4] + "\n\n" + Z[5] + "\n⟦name#p1⟧\n⟦company⟧\n"
        + c.pick("Tel. ", "T ", "📞 ", "") + "⟦phone:land#p1⟧\n")
    return "payroll_zip.eml"

DONATE = {
    "en": ("Donate", "Every gift helps. You can donate by bank transfer:", "Account name", "Reference: Donation", "Questions about your donation receipt?"),
    "de": ("Spenden", "Jede Spende hilft! Unser Spendenkonto:", "Kontoinhaber", "Verwendungszweck: Spende", "Fragen zur Zuwendungsbestätigung?"),
    "fr": ("Faire un don", "Chaque don compte. Vous pouvez faire un virement :", "Titulaire", "Libellé : Don", "Une question sur votre reçu fiscal ?"),
    "es": ("Donar", "Cada aportación cuenta. Puedes donar por transferencia:", "Titular", "Concepto: Donativo", "¿Dudas sobre tu certificado de donación?"),
    "nl": ("Doneren", "Elke gift helpt. U kunt doneren via een overboeking:", "Ten name van", "Omschrijving: Gift", "Vragen over uw giftenbewijs?"),
    "it": ("Dona ora", "Ogni donazione conta. Puoi donare con un bonifico:", "Intestatario", "Causale: Donazione", "Domande sulla ricevuta per la detrazione?"),
    "pl": ("Wesprzyj nas", "Każda wpłata pomaga. Numer konta:", "Odbiorca", "Tytuł: Darowizna", "Pytania dotyczące potwierdzenia darowizny?"),
    "pt": ("Doe agora", "Toda doação ajuda. Faça um PIX:", "Favorecido", "Descrição: Doação", "Dúvidas sobre o recibo da doação?"),
}
CHARITY = {"en-US": ("Hope Street Shelter", "hopestreetshelter.org"), "en-GB": ("Riverside Food Bank", "riversidefoodbank.org.uk"),
           "en-IN": ("Asha Education Trust", "ashaeducationtrust.org"), "en-AU": ("Coastal Wildlife Rescue", "coastalwildliferescue.org.au"),
           "de-DE": ("Tierheim Talheim e.V.", "tierheim-talheim.de"), "fr-FR": ("Les Amis du Littoral", "amisdulittoral.fr"),
           "es-ES": ("Asociación Mar Limpio", "marlimpio.org"), "nl-NL": ("Stichting Groene Dijk", "groenedijk.nl"),
           "it-IT": ("Associazione Amici del Parco", "amicidelparco.it"), "pl-PL": ("Fundacja Zielony Las", "zielonylas.org.pl"),
           "pt-BR": ("Instituto Mata Viva", "institutomataviva.org.br")}


@template(G9, None)
def g9_donation_page(c):
    D = c.L(DONATE)
    pay = {"en-US": "Zelle", "en-AU": "PayID", "en-IN": "UPI"}.get(c.loc)
    if pay:
        D = (D[0], f"Every gift helps. You can donate via {pay}:", D[2], D[3], D[4])
    c.companies["co"] = CHARITY[c.loc]
    c.w(f"<section id=\"donate\">\n  <h2>{D[0]}</h2>\n  <p>{D[1]}</p>\n  <dl>\n    <dt>{D[2]}</dt><dd>⟦company⟧</dd>\n")
    if c.loc in ("en-US", "en-IN", "en-AU"):
        c.w(f"    <dt>{pay}</dt><dd>⟦email_role:info⟧</dd>\n" if c.loc != "en-IN" else "    <dt>UPI</dt><dd>⟦upi⟧</dd>\n")
        c.w("    <dt>" + ("Donate by card over the phone" if c.loc != "en-IN" else "Foreign donors – IBAN") + "</dt><dd>"
            + ("⟦phone:land#co⟧" if c.loc != "en-IN" else "⟦iban:home#own⟧") + "</dd>\n")
    elif c.loc == "pt-BR":
        c.w("    <dt>Chave PIX</dt><dd>⟦email_role:info⟧</dd>\n    <dt>PIX (celular)</dt><dd>⟦phone_e164#pix⟧</dd>\n")
    else:
        c.w("    <dt>IBAN</dt><dd>⟦iban_print:home#own⟧</dd>\n    <dt>BIC</dt><dd>" + c.bic() + "</dd>\n")
    c.w(f"  </dl>\n  <p>{D[3]}</p>\n  <p>{D[4]} <a href=\"mailto:⟦email_work#p1⟧\">⟦name#p1⟧</a> · <a href=\"tel:⟦phone_e164#p1⟧\">⟦phone_local#p1⟧</a></p>\n</section>\n")
    return c.L({"de": "spenden.html", "fr": "faire-un-don.html", "es": "donar.html", "nl": "doneren.html", "it": "dona.html", "pl": "wesprzyj.html",
                "pt": "doe.html", "en": "donate.html"})

# ===========================================================================
# assembly
# ===========================================================================
GENRES = [G1, G2, G3, G4, G5, G6, G7, G8, G9, G10]
PER_GENRE_LOCALES = {"en-US": 12, "en-GB": 4, "de-DE": 4, "fr-FR": 3, "es-ES": 3, "nl-NL": 3, "it-IT": 3, "pl-PL": 2,
                     "pt-BR": 2, "en-IN": 2, "en-AU": 2}
CLEAN_PER_GENRE = 6


def finalize(pieces):
    text, ents, hns, pos = [], [], [], 0
    for val, lab in pieces:
        if lab is not None:
            rec = {"start": pos, "end": pos + len(val)}
            if lab[0] == "E":
                rec.update(category=lab[1], value=val)
                ents.append(rec)
            else:
                rec.update(kind=lab[1], value=val)
                hns.append(rec)
        text.append(val)
        pos += len(val)
    return "".join(text), ents, hns


def eligible(genre, loc, clean):
    return [t for t in TEMPLATES[genre] if t["clean"] == clean and (t["locales"] is None or loc in t["locales"])]


def plan(rng):
    docs = []
    for g in GENRES:
        locs = [l for l, n in PER_GENRE_LOCALES.items() for _ in range(n)]
        rng.shuffle(locs)
        clean_idx = set()
        per_loc = Counter()
        for i, l in enumerate(locs):
            if len(clean_idx) >= CLEAN_PER_GENRE:
                break
            if eligible(g, l, True) and per_loc[l] < (2 if l == "en-US" else 1):
                clean_idx.add(i)
                per_loc[l] += 1
        for i, l in enumerate(locs):
            docs.append((g, l, i in clean_idx))
    rng.shuffle(docs)
    return docs


def assign_templates(docs, rng):
    """Choose a template for every planned document.  Per genre, documents
    whose language has the fewest eligible templates are served first, and
    each document gets the eligible template with the lowest
    (uses + 1) / weight, ties broken at random.  Every hand-written template
    is therefore used, weights shift the mix, and repeats are spread out."""
    chosen = {}
    for genre in GENRES:
        idxs = [i for i, d in enumerate(docs) if d[0] == genre]
        rng.shuffle(idxs)
        idxs.sort(key=lambda i: len(eligible(genre, docs[i][1], docs[i][2])))
        uses = Counter()
        for i in idxs:
            _, loc, clean = docs[i]
            cands = eligible(genre, loc, clean)
            scores = [((uses[t["fn"].__name__] + 1) / t["weight"], rng.random()) for t in cands]
            t = cands[min(range(len(cands)), key=lambda k: scores[k])]
            uses[t["fn"].__name__] += 1
            chosen[i] = t
    return chosen


def build():
    master = random.Random(SEED)
    docs = plan(master)
    chosen = assign_templates(docs, master)
    out = []
    for idx, (genre, loc, clean) in enumerate(docs):
        rng = random.Random("%d-%d" % (SEED, idx))
        t = chosen[idx]
        c = Ctx(rng, loc)
        fname = t["fn"](c)
        text, ents, hns = finalize(c.pieces)
        out.append({"id": "ev2-%04d" % idx, "genre": genre, "language": loc, "filename": fname, "text": text,
                    "entities": ents, "hard_negatives": hns, "_template": t["fn"].__name__, "_clean": clean})
    return out


# ===========================================================================
# checks
# ===========================================================================
EMAIL_SCAN = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
DIGITRUN_SCAN = re.compile(r"(?<![\w])(?:\d[ -]?){12,18}\d(?![\w])")
IBAN_SCAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")


def ssn_valid(v):
    d = re.sub(r"\D", "", v)
    if len(d) != 9:
        return False
    a, g, s = int(d[:3]), int(d[3:5]), int(d[5:])
    return 0 < a < 900 and a != 666 and g > 0 and s > 0


def check(docs):
    problems, warnings = [], []
    for d in docs:
        t = d["text"]
        if "⟦" in t or "⟧" in t:
            problems.append((d["id"], "unrendered slot"))
        spans = []
        for e in d["entities"]:
            if t[e["start"]:e["end"]] != e["value"]:
                problems.append((d["id"], "entity span mismatch", e))
            if e["category"] not in CATEGORIES:
                problems.append((d["id"], "bad category", e))
            if e["value"] != e["value"].strip() or not e["value"]:
                problems.append((d["id"], "entity has surrounding whitespace", e))
            v = e["value"]
            if e["category"] == "payment_card":
                digits = re.sub(r"[ -]", "", v)
                if not (digits.isdigit() and 12 <= len(digits) <= 19 and luhn_ok(digits)) or digits in TEST_CARDS:
                    problems.append((d["id"], "bad card", v))
            if e["category"] == "iban" and not iban_ok(v):
                problems.append((d["id"], "bad iban", v))
            if e["category"] == "ssn" and not ssn_valid(v):
                problems.append((d["id"], "bad ssn", v))
            if e["category"] == "phone" and not (7 <= len(re.sub(r"\D", "", v)) <= 15):
                problems.append((d["id"], "bad phone", v))
            if e["category"] == "email" and not ("@" in v or " at " in v or "(at)" in v or "[at]" in v):
                problems.append((d["id"], "bad email", v))
            spans.append((e["start"], e["end"]))
        spans.sort()
        for (a1, b1), (a2, b2) in zip(spans, spans[1:]):
            if a2 < b1:
                problems.append((d["id"], "overlapping entities", (a1, b1, a2, b2)))
        for h in d["hard_negatives"]:
            if t[h["start"]:h["end"]] != h["value"]:
                problems.append((d["id"], "hn span mismatch", h))
            for a, b in spans:
                if h["start"] < b and a < h["end"]:
                    problems.append((d["id"], "hard negative overlaps entity", h))
            v = h["value"]
            dig = re.sub(r"[ -]", "", v)
            k = h["kind"]
            if k == "test_card_number" and dig not in TEST_CARDS:
                problems.append((d["id"], "unknown test card", v))
            if k in ("ean13_barcode",) and not (ean13_ok(dig) and luhn_ok(dig)):
                problems.append((d["id"], "bad ean", v))
            if k == "upc_barcode" and not (upc_ok(dig) and luhn_ok(dig)):
                problems.append((d["id"], "bad upc", v))
            if k in ("imei", "order_number", "account_number", "tracking_number") and not luhn_ok(dig):
                problems.append((d["id"], "hn not luhn-valid", v))
            if k == "iban_bad_checksum" and iban_ok(v):
                problems.append((d["id"], "iban hard negative passes mod-97", v))
        # every occurrence of an entity value must itself be labelled
        for e in d["entities"]:
            v = e["value"]
            if len(v) < 6:
                continue
            pos = t.find(v)
            while pos != -1:
                if not any(x["start"] <= pos < x["end"] for x in d["entities"]):
                    problems.append((d["id"], "unlabelled repeat of entity value", v))
                pos = t.find(v, pos + 1)
        if d["_clean"] and d["entities"]:
            problems.append((d["id"], "clean document has entities"))
        # coverage scan: things that look sensitive but are neither entity nor hard negative
        covered = [(x["start"], x["end"]) for x in d["entities"] + d["hard_negatives"]]

        def is_cov(a, b):
            return any(a < y and x < b for x, y in covered)
        for m in EMAIL_SCAN.finditer(t):
            if not is_cov(m.start(), m.end()):
                warnings.append((d["id"], "uncovered email-like", m.group()))
        for m in DIGITRUN_SCAN.finditer(t):
            digs = re.sub(r"\D", "", m.group())
            if luhn_ok(digs) and not is_cov(m.start(), m.end()):
                warnings.append((d["id"], "uncovered luhn-valid digit run", m.group()))
        for m in IBAN_SCAN.finditer(t):
            if iban_ok(m.group()) and not is_cov(m.start(), m.end()):
                warnings.append((d["id"], "uncovered valid IBAN", m.group()))
    return problems, warnings


def stats(docs):
    cat = Counter(e["category"] for d in docs for e in d["entities"])
    genre = Counter(d["genre"] for d in docs)
    lang = Counter(d["language"] for d in docs)
    hn = Counter(h["kind"] for d in docs for h in d["hard_negatives"])
    ent_by_genre = Counter()
    for d in docs:
        ent_by_genre[d["genre"]] += len(d["entities"])
    clean = sum(1 for d in docs if not d["entities"])
    return cat, genre, lang, hn, ent_by_genre, clean


def main():
    docs = build()
    problems, warnings = check(docs)
    cat, genre, lang, hn, ent_by_genre, clean = stats(docs)
    n_ent = sum(cat.values())
    n_hn = sum(hn.values())
    print("documents:", len(docs), " with no entity:", clean, "(%.1f%%)" % (100.0 * clean / len(docs)))
    print("entities:", n_ent, dict(sorted(cat.items())))
    print("hard negatives:", n_hn)
    for k, v in sorted(hn.items()):
        print("   %-24s %d" % (k, v))
    print("genres:", dict(genre))
    print("entities per genre:", dict(ent_by_genre))
    print("languages:", dict(sorted(lang.items())))
    problems = problems + warnings  # the coverage scan must be silent as well
    if problems:
        print("PROBLEMS (%d):" % len(problems))
        for p in problems[:60]:
            print("  ", p)
        sys.exit(1)
    assert n_ent >= 900, n_ent
    for k in CATEGORIES:
        assert cat[k] >= 120, (k, cat[k])
    assert n_hn >= 300, n_hn
    with open(OUT, "w", encoding="utf-8") as f:
        for d in docs:
            rec = {k: d[k] for k in ("id", "genre", "language", "filename", "text", "entities", "hard_negatives")}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    sha = hashlib.sha256(open(OUT, "rb").read()).hexdigest()
    write_readme(docs, sha)
    print("wrote", OUT, "and README.md")
    print("sha256", sha)
    return docs, sha


# ===========================================================================
# README
# ===========================================================================
HN_DESCRIPTIONS = [
    ("ean13_barcode", "EAN-13 product codes that pass both the EAN and the Luhn check (so they look like card numbers to a Luhn test)"),
    ("upc_barcode", "UPC-A product codes, also Luhn-valid (US receipts, packing slips, product pages)"),
    ("imei", "15-digit IMEIs (real TAC-style prefixes, Luhn check digit), written compact and grouped"),
    ("isin", "ISINs with a correct check digit (fund lists, factsheets)"),
    ("tracking_number", "Luhn-valid parcel tracking numbers (FedEx/DHL/USPS-like lengths 12-22)"),
    ("order_number", "Luhn-valid order / PSP reference numbers of 12-19 digits, some starting with 3/4/5/6 like card numbers"),
    ("account_number", "Luhn-valid customer, contract and loyalty numbers"),
    ("timestamp", "ISO-8601, log, Apache, syslog, epoch seconds / milliseconds timestamps"),
    ("date", "numeric dates in the locale's format and ISO dates"),
    ("version", "semantic versions, 4-part and Windows build numbers (IP-like), product versions"),
    ("ip_address", "private, documentation and public IPv4, IPv6"),
    ("phone_like_id", "case, ticket, order, RMA, confirmation and reference numbers shaped like the locale's phone numbers"),
    ("placeholder", "placeholders where a secret would go: <YOUR_API_KEY>, changeme, ********, sk_live_xxxx…, localised <Passwort> etc."),
    ("secret_reference", "${VAR}, $VAR, ${{ secrets.X }}, {{ vault_x }}, vault:, AWS/GCP secret-manager names, op://, Key Vault, %env()%, /run/secrets, bare env-var names"),
    ("test_card_number", "public test card numbers from payment-provider documentation, quoted as test numbers (docs, tests, DLP exclusions, bug reproduction steps)"),
    ("iban_bad_checksum", "IBAN-shaped strings with wrong check digits (validator fixtures, rejected values, typo'd IBANs) and SEPA creditor identifiers (CC..ZZZ..), which fail the IBAN mod-97 test"),
    ("nine_digit_non_ssn", "9-digit numbers that are not SSNs: EINs, ABA routing numbers, ZIP+4, employee/member/control/application ids, claim/part/parcel numbers in 3-2-4 form, FTC report numbers, never-issued SSN-shaped values (000-, 666-, 9xx-, group 00) in validator tests, SIREN (FR), REGON (PL), ACN (AU), German VAT ids"),
    ("hash_or_id", "git SHAs, SHA-256 digests, docker digests, UUIDs, request ids, Stripe object ids, Twilio SIDs, GCP private_key_id"),
    ("public_key", "SSH public keys and Stripe publishable keys (pk_live_…), which are public by design"),
    ("example_credential", "credentials published in vendor documentation as examples (AKIAIOSFODNN7EXAMPLE, wJalrXUtnFEMI/…EXAMPLEKEY, the Slack and Stripe doc examples, the jwt.io sample token)"),
    ("masked_value", "masked card numbers (**** 1234, 411111******1111), masked IBANs, CI-masked secrets (***)"),
    ("email_like", "package@version specs, git@host:repo remotes, user@host shell prompts, UPI ids"),
]


def write_readme(docs, sha):
    cat, genre, lang, hn, ent_by_genre, clean = stats(docs)
    n_ent = sum(cat.values())
    n_hn = sum(hn.values())
    cat_by_genre = {g: Counter() for g in GENRES}
    for d in docs:
        for e in d["entities"]:
            cat_by_genre[d["genre"]][e["category"]] += 1
    clean_by_genre = Counter(d["genre"] for d in docs if not d["entities"])
    lines = []
    A = lines.append
    A("# detection_eval.jsonl – independent evaluation set for a personal-data / secret detector\n")
    A("Built by `build.py` in this directory (Python 3 standard library only, fixed seed %d). "
      "Running `python3 build.py` regenerates `detection_eval.jsonl` byte-for-byte, runs all consistency checks, prints the "
      "statistics below and rewrites this README. The output does not depend on `PYTHONHASHSEED` (checked with two different values).\n" % SEED)
    A("## How it was built\n")
    A("* Independence: every template, word list, name list, company list, label dictionary and value generator was written by hand "
      "for this set. No other part of the project (detector code, other evaluation sets, notes) was read, and no data-generation "
      "library (`faker` or similar) was used.")
    A(f"* Documents are produced from {sum(len(v) for v in TEMPLATES.values())} hand-written templates (functions in `build.py`) across 10 genres and 11 locales. A template "
      "writes text with slots `⟦type:arg#tag⟧`; each slot is filled by a generator that returns either an entity, a hard negative or "
      "plain filler. Offsets are computed from the assembled pieces, so spans are exact by construction and then re-checked.")
    A("* Non-English documents are written in the document's language with that locale's conventions (labels, salutation, address "
      "and date format, decimal comma, currency, phone formats, bank details, CSV `;` separators). Code, configuration and logs "
      "carry localised comments / messages.")
    A("* PDF-extracted text (`pdf_text`) is re-flowed like a text extractor: hard line breaks at a fixed width, occasional "
      "hyphenation, doubled spaces, `ﬁ` ligatures, running headers and footers with page numbers (footers repeat contact data, "
      "so each repeat is labelled), form feeds between pages. Entity values are never split across lines.")
    A("* Template choice: per genre, each document gets the eligible template with the lowest (uses + 1) / weight, documents of "
      "languages with few eligible templates first, so every template is used and repeats are spread out; 6 documents per genre "
      "(15 %) use dedicated templates that contain no sensitive value but many hard negatives. Each document has its own "
      "random generator seeded from the fixed seed and its index.\n")
    A("## Record format\n")
    A("One JSON object per line: `id`, `genre`, `language`, `filename`, `text`, `entities` (`start`, `end`, `category`, `value`) and "
      "`hard_negatives` (`start`, `end`, `kind`, `value`); `text[start:end] == value` for every span.\n")
    A("## Labelling policy\n")
    A("Everything sensitive in a document is in `entities`; anything else is, by definition, not sensitive. Names and postal "
      "addresses occur (they are part of realistic documents) but are outside the six categories and therefore not labelled.\n")
    A("* **email** – every address, wherever it occurs: headers, signatures, `mailto:` targets *and* link texts, JSON/YAML/CSV values, "
      "SQL, log lines, tracking-pixel URLs, git config, service-account addresses, and obfuscated forms on contact pages "
      "(`name [at] domain [dot] tld`, `name (at) domain`, `name at domain`). Not labelled (hard negatives `email_like`): "
      "`package@1.2.3`, `git@github.com:org/repo.git`, `user@host` prompts, UPI ids.")
    A("* **phone** – the complete number as written (country code, trunk prefix, `(0)`, extension digits after a hyphen in German "
      "DIN style); in `tel:` links only the number. Ranges: US 555-01xx fictional range plus valid NPA-NXX; UK Ofcom drama ranges "
      "(020 7946 0xxx, 0113–0161 496 0xxx, 07700 900xxx) plus valid 020/07 ranges; Australia ACMA fictional (0x 5550 xxxx, "
      "0x 7010 xxxx, 0491 57x xxx) plus valid 04xx mobiles; France ARCEP fiction blocks (01 99 00, 02 61 91, 03 53 01, "
      "04 65 71, 05 36 49, 06 39 98) plus valid 01–05/06/07; Germany, Spain, Netherlands, Italy, Poland, Brazil, India with real "
      "area codes / mobile prefixes and correct subscriber lengths. Each locale has its own local and international formats; "
      "some documents contain numbers of other countries in international format.")
    A("* **payment_card** – Visa, Mastercard (51–55, 2221–2720), Amex (34/37, 4-6-5), Discover, JCB (3528–3589), Diners (36/300–305/38, 4-6-4), "
      "UnionPay, Maestro, RuPay (en-IN), Elo and Hipercard (pt-BR); 14–19 digits, Luhn-valid, written spaced, dashed or compact. "
      "Published test numbers are never entities.")
    A("* **iban** – DE, AT, CH, FR, BE, LU, ES, PT, NL, IT, PL, GB, IE, BR, AE with correct mod-97 check digits and, where they exist, "
      "correct national check digits (French RIB key, Spanish DC, Italian CIN, Polish branch digit, Portuguese NIB, Belgian "
      "mod-97, Dutch 11-proof); real bank codes / BLZ / sort-code prefixes; printed in groups of four or pasted compact.")
    A("* **ssn** – area 001–899 except 666, group ≠ 00, serial ≠ 0000; written 123-45-6789, 123 45 6789 or 123456789; only in "
      "US documents where a reader recognises them (labelled fields, forms, HR/tax/loan/KYC context, `ssn` columns/keys).")
    A("* **secret** – the credential only, never the surrounding syntax: AWS access key ids (counted as secret), AWS secret keys and "
      "session tokens, GitHub (ghp_/gho_/ghs_/ghu_/github_pat_), GitLab (glpat-), Slack bot/user tokens and webhook URLs (whole "
      "URL), Stripe sk_live_/rk_live_/whsec_, OpenAI (sk-…T3BlbkFJ…, sk-proj-), Anthropic (sk-ant-api03-), Google API keys "
      "(AIzaSy…) and OAuth client secrets (GOCSPX-), SendGrid, Twilio auth tokens, Mailgun, npm, PyPI, Hugging Face, "
      "DigitalOcean, Vault, Telegram bot tokens, Azure storage account keys and Laravel APP_KEYs, Django SECRET_KEY, Rails "
      "secret_key_base, WordPress salts, JWTs, HTTP `Authorization: Bearer/token/Basic` values (token part only), session "
      "cookies, docker `auth` blobs (base64 user:token), private keys (PEM / OpenSSH blocks, also `\\n`-escaped inside JSON, "
      "label = BEGIN…END), passwords and passphrases in configuration, code, commands (`-p…`, `--passphrase`, `sshpass -p`, "
      "`curl -u user:pw` → pw only) and prose in the document's language (temporary passwords, shared Wi-Fi keys, ZIP passwords, "
      "passwords users paste into chats and tickets), and the password inside connection strings and URLs "
      "(`postgres://user:PW@host`, `Password=PW;`, `password=PW&`). Not secrets: publishable keys, Twilio account SIDs, "
      "key ids, hashes, placeholders, variable / secret-manager references, masked values, documented example credentials.\n")
    A("## Counts\n")
    A(f"* documents: {len(docs)}; documents with no entity: {clean} ({100.0 * clean / len(docs):.1f} %)")
    A(f"* entities: {n_ent}; hard negatives: {n_hn}\n")
    A("### Entities per category\n")
    A("| category | count |\n|---|---:|")
    for k in CATEGORIES:
        A(f"| {k} | {cat[k]} |")
    A("\n### Per genre\n")
    A("| genre | documents | without entities | " + " | ".join(CATEGORIES) + " | entities | hard negatives |")
    A("|---|---:|---:|" + "---:|" * len(CATEGORIES) + "---:|---:|")
    hn_by_genre = Counter()
    for d in docs:
        hn_by_genre[d["genre"]] += len(d["hard_negatives"])
    for g in GENRES:
        A(f"| {g} | {genre[g]} | {clean_by_genre[g]} | " + " | ".join(str(cat_by_genre[g][k]) for k in CATEGORIES)
          + f" | {ent_by_genre[g]} | {hn_by_genre[g]} |")
    A("\n### Per language\n")
    cat_by_lang = {l: Counter() for l in LOCALES}
    for d in docs:
        for e in d["entities"]:
            cat_by_lang[d["language"]][e["category"]] += 1
    A("| language | documents | " + " | ".join(CATEGORIES) + " |")
    A("|---|---:|" + "---:|" * len(CATEGORIES))
    for l in LOCALES:
        A(f"| {l} | {lang[l]} | " + " | ".join(str(cat_by_lang[l][k]) for k in CATEGORIES) + " |")
    A("\n### Hard negatives per kind\n")
    A("| kind | count | what |\n|---|---:|---|")
    for k, desc in HN_DESCRIPTIONS:
        A(f"| {k} | {hn[k]} | {desc} |")
    A("\n## Checks run by build.py\n")
    A("Every span matches the text; no two entities overlap; no hard negative overlaps an entity; every repeat of an entity value "
      "(6+ characters) in a document is itself labelled; every card is Luhn-valid and not a published test number; every IBAN passes mod-97; every "
      "SSN is in an issued range; every `iban_bad_checksum` fails mod-97; EAN/UPC/IMEI/order/account/tracking hard negatives are "
      "Luhn-valid; test-card hard negatives are from the published list; no template slot is left unrendered; clean documents "
      "contain no entity; a scan for unlabelled e-mail addresses, Luhn-valid 13–19 digit runs and valid IBANs reports nothing; "
      "minimum counts (≥ 900 entities, ≥ 120 per category, ≥ 300 hard negatives) hold.\n")
    A("## Caveats\n")
    A("* Values are synthetic. Where a country has no fictional range, numbers follow the real numbering plan and may coincide with "
      "assigned numbers; the same holds for card numbers, IBANs and SSNs.")
    A("* `hard_negatives` lists the look-alikes that were planted on purpose; other harmless tokens (amounts, postal codes, "
      "invoice numbers such as RE-2024-0815, CVV/expiry values) are neither entities nor listed hard negatives.")
    A("* Some policy decisions a detector may disagree with: AWS access key ids are secrets; obfuscated addresses are e-mails; the "
      "wrong SSN quoted in a W-2 correction ticket is still an SSN; Wi-Fi keys and ZIP passwords in prose are secrets; SEPA "
      "creditor identifiers are IBAN-like hard negatives.")
    A("* CVVs and expiry dates sometimes appear next to card numbers (as in the real documents) and are not labelled.\n")
    A("## Files\n")
    A("* `build.py` – generator and checker (run it to rebuild)")
    A("* `detection_eval.jsonl` – the evaluation set")
    A("* `README.md` – this file (regenerated by `build.py`)\n")
    A(f"sha256 of detection_eval.jsonl: `{sha}`\n")
    with open(os.path.join(HERE, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))

if __name__ == "__main__":
    main()
